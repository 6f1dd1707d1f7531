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

from visualizer._adapters import Target
from visualizer._adapters._windows import Windows
from visualizer._targets import describe, resolve

__all__ = ["attach", "find"]

VARIABLE = "attn"


def find(model, modules, claimed) -> list[Target]:
    targets = []
    for name, module in modules:
        if id(module) in claimed or not isinstance(getattr(module, "fused_attn", None), bool):
            continue
        function = _function(type(module))
        if function is not None:
            targets.append(Target(name, module, "self", __name__.rsplit(".", 1)[-1], detail=function))
    return targets


def _function(cls):
    """The function holding ``attn`` behind ``cls.forward``, or None."""
    forward = getattr(cls, "forward", None)
    if forward is None:
        return None
    try:
        return resolve(forward, (VARIABLE,), "timm attention")
    except (TypeError, ValueError):
        return None


def attach(targets, recorder):
    windows = Windows(recorder, _cause)
    switched = []
    try:
        for function in {target.detail: None for target in targets}:
            windows.tap(function, VARIABLE)
        for target in targets:
            windows.watch(target, (target.detail,))
            switched.append((target.module, target.module.fused_attn))
            target.module.fused_attn = False
    except BaseException:
        _detach(windows, switched)
        raise
    return lambda: _detach(windows, switched)


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
