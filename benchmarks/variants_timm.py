"""The benchmark variants for timm ViTs (``timm.layers.Attention``), each built by ``VARIANTS[key](config)``.

    >>> variant = VARIANTS["hooks"](config)           # config: a model_configs.Config of family "timm"
    >>> variant.enter(); variant.step(); len(variant.maps()); variant.leave()
    12

The fused kernel (``F.scaled_dot_product_attention``, timm's default) is the baseline;
variants that need the probabilities switch ``fused_attn`` off on every attention module
in ``enter`` and back on in ``leave``.
"""

from __future__ import annotations

from collections.abc import Callable

import variant
from variant import Variant, baseline_variant, capture_attention_variant, features, forward_step

__all__ = ["VARIANTS"]


def _attention_modules(model) -> list:
    from timm.layers import Attention

    return [module for module in model.modules() if isinstance(module, Attention)]


def _fused(model, on: bool) -> Callable:
    def switch() -> None:
        for module in _attention_modules(model):
            module.fused_attn = on

    return switch


def eager_variant(config) -> Variant:
    return Variant(
        "eager",
        "eager forward (fused_attn=False), no capture",
        forward_step(config),
        enter=_fused(config.model, False),
        leave=_fused(config.model, True),
    )


def get_local_variant(config) -> Variant:
    """The global ``get_local`` on timm's own ``Attention.forward``, in place, with fused attention off."""
    from timm.layers import Attention

    return variant.get_local_variant(
        config,
        Attention.forward,
        "attn",
        "get_local('attn') on Attention.forward, in place",
        _fused(config.model, False),
        _fused(config.model, True),
    )


def hooks_variant(config) -> Variant:
    """Forward hooks only, with the fused kernel left on: what hook-based tools can do for timm.

    timm's fused path never forms the attention probabilities, but its ``q_norm`` and
    ``k_norm`` (``nn.Identity`` unless the model normalises q and k) see q and k, each
    (batch, heads, tokens, head_dim), after any normalisation. A forward hook on each
    block's ``attn.q_norm`` and ``attn.k_norm`` keeps their outputs, and a forward hook on
    ``attn`` itself, run after the fused kernel, computes ``softmax(q * attn.scale @ k^T)``:
    the map is computed a second time, beside the kernel, with no mask (a ViT has none).
    The hooks are registered in ``enter`` and removed in ``leave``.
    """
    maps, handles = [], []

    def enter() -> None:
        for block in config.model.blocks:
            seen, attn = {}, block.attn
            handles.append(attn.q_norm.register_forward_hook(_keep(seen, "q")))
            handles.append(attn.k_norm.register_forward_hook(_keep(seen, "k")))
            handles.append(attn.register_forward_hook(_recompute(seen, maps)))

    def leave() -> None:
        for handle in handles:
            handle.remove()
        handles.clear()

    return Variant(
        "hooks",
        "forward hooks: q_norm/k_norm + softmax(q k^T) beside the fused kernel",
        forward_step(config),
        maps=lambda: list(maps),
        reset=maps.clear,
        enter=enter,
        leave=leave,
    )


def _keep(seen: dict, name: str):
    def after(module, args, output) -> None:
        seen[name] = output

    return after


def _recompute(seen: dict, maps: list):
    def after(module, args, output) -> None:
        q, k = seen.pop("q"), seen.pop("k")
        maps.append((q * module.scale @ k.transpose(-2, -1)).softmax(dim=-1))

    return after


def output_attentions_variant(config) -> Variant:
    """transformers' implementation of the same architecture, in eager, with ``output_attentions=True``."""
    peer, inputs, what = config.peer()
    kept = {}

    def step():
        output = peer(**inputs, output_attentions=True)
        kept["maps"] = output.attentions
        return features(output)

    return Variant(
        "output_attentions",
        f"transformers eager output_attentions=True ({what})",
        step,
        maps=lambda: list(kept["maps"]),
        reset=kept.clear,
        same_model=False,
        same_weights="same weights" in what,
    )


def anycapture_variant(config) -> Variant:
    """anycapture 0.1.4's wrapper around a copy of ``Attention.forward``, installed on the class."""
    from timm.layers import Attention

    return variant.anycapture_variant(
        config,
        Attention,
        "forward",
        "attn",
        "anycapture 0.1.4 on a copy of Attention.forward",
        _fused(config.model, False),
        _fused(config.model, True),
    )


VARIANTS = {
    "baseline": baseline_variant,
    "eager": eager_variant,
    "get_local": get_local_variant,
    "capture_attention": capture_attention_variant,
    "hooks": hooks_variant,
    "output_attentions": output_attentions_variant,
    "anycapture": anycapture_variant,
}
