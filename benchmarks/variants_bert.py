"""The benchmark variants for transformers' BERT, each built by ``VARIANTS[key](config)``.

    >>> variant = VARIANTS["hooks"](config)           # config: a model_configs.Config of family "bert"
    >>> variant.enter(); variant.step(); len(variant.maps()); variant.leave()
    6

The model's default implementation, ``sdpa``, is the baseline; variants that need the
probabilities switch it to ``eager`` (``model.set_attn_implementation``) in ``enter`` and
back in ``leave``. In eager, every ``BertSelfAttention`` calls the module-level
``modeling_bert.eager_attention_forward``, which keeps them in ``attn_weights``.
"""

from __future__ import annotations

from collections.abc import Callable

import variant
from variant import Variant, baseline_variant, capture_attention_variant, features, forward_step

__all__ = ["VARIANTS"]


def _implementation(model, name: str | None = None) -> Callable:
    """Switch ``model`` to attention implementation ``name``, or back to the one it has now."""
    name = name or model.config._attn_implementation

    def switch() -> None:
        model.set_attn_implementation(name)

    return switch


def eager_variant(config) -> Variant:
    return Variant(
        "eager",
        "eager forward, no capture",
        forward_step(config),
        enter=_implementation(config.model, "eager"),
        leave=_implementation(config.model),
    )


def get_local_variant(config) -> Variant:
    """The global ``get_local`` on ``modeling_bert.eager_attention_forward``, in place, in eager."""
    from transformers.models.bert import modeling_bert

    return variant.get_local_variant(
        config,
        modeling_bert.eager_attention_forward,
        "attn_weights",
        "get_local('attn_weights') on eager_attention_forward, in place",
        _implementation(config.model, "eager"),
        _implementation(config.model),
    )


def hooks_variant(config) -> Variant:
    """Eager attention plus a forward hook on each self-attention module keeping ``output[1]``.

    The modules are those the model declares for its own ``output_attentions``
    (``model.can_record_outputs["attentions"]``, ``BertSelfAttention`` for BERT), whose
    forward returns ``(attn_output, attn_weights)``.
    """
    model, maps, handles = config.model, [], []
    declared = model.can_record_outputs["attentions"]
    if not isinstance(declared, type):
        raise TypeError(f"expected can_record_outputs['attentions'] to be a module class, got {declared!r}")
    eager, back = _implementation(model, "eager"), _implementation(model)

    def enter() -> None:
        eager()
        for module in model.modules():
            if isinstance(module, declared):
                handles.append(module.register_forward_hook(lambda m, a, output: maps.append(output[1])))

    def leave() -> None:
        for handle in handles:
            handle.remove()
        handles.clear()
        back()

    return Variant(
        "hooks",
        f"forward hooks on each {declared.__name__} (eager), keeping output[1]",
        forward_step(config),
        maps=lambda: list(maps),
        reset=maps.clear,
        enter=enter,
        leave=leave,
    )


def output_attentions_variant(config) -> Variant:
    kept = {}

    def step():
        output = config.model(**config.inputs, output_attentions=True)
        kept["maps"] = output.attentions
        return features(output)

    return Variant(
        "output_attentions",
        "transformers eager output_attentions=True (same model)",
        step,
        maps=lambda: list(kept["maps"]),
        reset=kept.clear,
        enter=_implementation(config.model, "eager"),
        leave=_implementation(config.model),
    )


def anycapture_variant(config) -> Variant:
    """anycapture 0.1.4's wrapper around a copy of ``eager_attention_forward``, installed in the module.

    ``BertSelfAttention`` looks ``eager_attention_forward`` up in its module's globals on
    every call, so the wrapper takes effect when it replaces that global.
    """
    from transformers.models.bert import modeling_bert

    return variant.anycapture_variant(
        config,
        modeling_bert,
        "eager_attention_forward",
        "attn_weights",
        "anycapture 0.1.4 on a copy of eager_attention_forward",
        _implementation(config.model, "eager"),
        _implementation(config.model),
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
