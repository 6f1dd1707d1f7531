"""timm's attention modules (ViT, DeiT, DINOv2, EVA, BEiT, ...), fused kernel or not.

timm's attention classes share one convention: a per-instance ``fused_attn`` switch, and
an unfused path that keeps the probabilities in a local ``attn``. The fused path
(``F.scaled_dot_product_attention``, the default) never computes them. During capture
each selected instance is switched to the unfused path, and ``attn`` is taken at return
by a get_local tap on the class's own, unmodified ``forward``; afterwards the switch goes
back to what it was. Outputs agree with the fused path to float rounding (~1e-6).

Any module that follows the convention is recorded this way, timm's or not.
"""

from __future__ import annotations

from visualizer._adapters import Target, block_of
from visualizer._adapters._windows import Windows
from visualizer._core import describe, resolve

__all__ = ["ADAPTER"]

VARIABLE = "attn"


class TimmAdapter:
    """timm's attention modules: switched to their unfused path, ``attn`` read by a get_local tap."""

    name = "timm"
    framework = None  # any module following timm's convention, timm's or not
    supports = "timm attention modules (those with a `fused_attn` switch)"

    def find(self, model, modules, claimed, core) -> list:
        everything = dict(model.named_modules())
        targets: list = []
        for name, module in modules:
            if id(module) in claimed or not isinstance(getattr(module, "fused_attn", None), bool):
                continue
            function = _function(type(module))
            if function is not None:
                targets.append(
                    Target(name, module, self.name, block=block_of(name, everything), payload=function)
                )
        return targets

    def attach(self, targets, recorder, core):
        windows = Windows(recorder, _cause, core)
        switched: list = []
        try:
            for function in {target.payload: None for target in targets}:
                windows.tap(function, VARIABLE)
            for target in targets:
                windows.watch(target, (target.payload,))
                switched.append((target.module, target.module.fused_attn))
                target.module.fused_attn = False
        except BaseException:
            _detach(windows, switched)
            raise
        return lambda: _detach(windows, switched)


ADAPTER = TimmAdapter()


def _function(cls):
    """The function holding ``attn`` behind ``cls.forward``, or None."""
    forward = getattr(cls, "forward", None)
    if forward is None:
        return None
    try:
        return resolve(forward, (VARIABLE,), "timm attention")
    except (TypeError, ValueError):
        return None


def _detach(windows, switched) -> None:
    for module, fused in switched:
        module.fused_attn = fused
    windows.close()


def _cause(target, function, unbound) -> str:
    return (
        f"{describe(function)} returned without assigning {VARIABLE!r} although capture switched "
        f"{target.name}.fused_attn off; this class's unfused path does not keep the probabilities in "
        f"{VARIABLE!r}. Decorate the function that computes them with get_local('<name>') instead."
    )
