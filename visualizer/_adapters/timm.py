"""timm's attention modules, every class of timm 1.0 that computes attention probabilities.

>>> with capture_attention(swin) as maps:
...     swin(images)
>>> maps.info("layers.0.blocks.1.attn").layout      # Windows(window=(7, 7), grid=(8, 8), shift=(3, 3), ...)
>>> maps.scatter("layers.0.blocks.1.attn").shape    # (batch, heads, H*W, H*W)

Each class is listed in ``_timm_inventory.INVENTORY``, captured or refused with a reason
(the refusal reaches the user as a CaptureWarning). A captured module's map is the local
variable (``attn`` mostly) that holds it when the method returns, taken by a get_local tap
on the class's own, unmodified code; classes with a ``fused_attn`` switch are switched to
their unfused path for the capture and back after (outputs agree to float rounding). Any
other module with a ``fused_attn`` switch and a local ``attn`` (timm's convention, timm's
class or not) is captured the same way, as token attention.

Declared structure: role None (timm models are single-stack); block via ``block_of``; kind
"self" where queries and keys come from one sequence -- class attention (CaiT, VOLO, XCiT:
the class token is part of the sequence) and attention pooling whose query is a token of
the input or its mean (``AttentionPool2d``, ``SimPool``) included -- and "cross" where the
queries are not from the keys' sequence: ``AttentionPoolLatent``'s learned latent queries,
CrossViT's class token from the other branch. Layout: tokens (batch, heads, queries, keys);
channels for cross-covariance attention (XCiT ``XCA``, EdgeNeXt, DaViT channel attention);
windows for Swin v1/v2/v2-cr, windowed SAM ViT blocks and MaxViT block partitions, read per
call from the block's input (``_timm_windows``), so ``maps.scatter`` puts them back on the
token grid. Maps that are not a softmax output (talking heads mixed after the softmax,
differential attention, ConViT's gated mix) are kept as the module uses them; the plan's
``derive`` says how they follow from the probabilities.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from visualizer._adapters import Refusal, Target, _sdpa, block_of
from visualizer._adapters._edit_points import norms_between
from visualizer._adapters._events import AttentionCall, EditPoint
from visualizer._adapters._scopes import ForwardScopes
from visualizer._adapters._switches import hold
from visualizer._adapters._timm_inventory import Plan, plan_for
from visualizer._adapters._timm_windows import Placement, place
from visualizer._core import describe, resolve
from visualizer._structure import CHANNELS, TOKENS, Windows

__all__ = ["ADAPTER", "Payload"]

GENERIC = Plan()


@dataclasses.dataclass(frozen=True)
class Payload:
    """What attach needs for one target: the function holding the map, and how to read it."""

    function: Any
    plan: Plan
    placement: Placement | None = None


class TimmAdapter:
    """timm's attention modules: the map read from a local by a get_local tap, fused kernels switched off."""

    name = "timm"
    framework = None  # any module following timm's convention (a `fused_attn` switch), timm's or not
    supports = "timm attention modules (every timm attention class, or any with a `fused_attn` switch)"
    order = 20  # any module with timm's `fused_attn` switch

    def find(self, model, modules, claimed, core) -> list:
        everything = dict(model.named_modules())
        found: list = []
        for name, module in modules:
            if id(module) in claimed:
                continue
            entry = plan_for(type(module))
            if entry is None:
                if not isinstance(getattr(module, "fused_attn", None), bool):
                    continue
                function = _function(type(module), GENERIC)
                if function is not None:
                    target = _target(self.name, name, module, everything, Payload(function, GENERIC))
                    target.eager_because = (
                        f"{type(module).__qualname__} is not a timm class, so what its fused path "
                        "computes is not known; its map is computed on its unfused path"
                    )
                    found.append(target)
                continue
            if isinstance(entry, str):
                found.append(Refusal(name, module, self.name, entry))
                continue
            placement = place(name, module, everything)
            if isinstance(placement, str):
                found.append(Refusal(name, module, self.name, placement))
                continue
            if entry.layout == "windows" and placement is None:
                reason = (
                    f"{type(module).__qualname__} runs outside the block that cuts its windows, so the "
                    "window layout is unknown"
                )
                found.append(Refusal(name, module, self.name, reason))
                continue
            function = _function(type(module), entry)
            if function is None:
                reason = (
                    f"{type(module).__qualname__}.{entry.method} has no local {entry.variable!r} in this "
                    "timm version; decorate the function that computes the map with get_local"
                )
                found.append(Refusal(name, module, self.name, reason))
                continue
            found.append(_target(self.name, name, module, everything, Payload(function, entry, placement)))
        return found

    def attach(self, targets, recorder, core):
        layouts = _Layouts(recorder)
        scopes = ForwardScopes(layouts, _cause, core)
        switched: list = []
        handles: list = []
        eager = [target for target in targets if not target.lazy]
        try:
            for function, variable in {(t.payload.function, t.payload.plan.variable): None for t in eager}:
                scopes.tap(function, variable)
            for target in targets:
                payload = target.payload
                if payload.placement is not None:
                    handles.append(layouts.follow(target, payload.placement))
                if target.lazy:  # its fused kernel stays on; the kernel call is watched
                    handles.append(
                        _Unwatch(target.module.register_forward_pre_hook(layouts.ran_hook(target)))
                    )
                    handles.append(_Unwatch(_sdpa.watch(target, target.module, layouts.kernel_calls)))
                    continue
                scopes.watch(target, (payload.function,))
                if payload.plan.switch and isinstance(getattr(target.module, "fused_attn", None), bool):
                    # Held until the last capture open on the module ends (captures may overlap).
                    switched.append(hold(target.module, "fused_attn"))
                    target.module.fused_attn = False
        except BaseException:
            _detach(scopes, switched, handles)
            raise
        return lambda: _detach(scopes, switched, handles)

    def edit_point(self, target, modules) -> EditPoint | str:
        from torch import nn

        module = target.module
        name = f"{target.name} ({type(module).__qualname__})"
        attribute = next((a for a in PROJECTIONS if isinstance(getattr(module, a, None), nn.Linear)), None)
        heads = getattr(module, "num_heads", None)
        if attribute is None or not isinstance(heads, int) or heads < 1:
            names = " or ".join(f"`{a}`" for a in PROJECTIONS)
            return f"{name} has no Linear output projection ({names}) and `num_heads` heads"
        between = norms_between(module, attribute)
        if between:
            return (
                f"{name} applies {between} to all heads together before its output projection "
                "(scale_norm), so one head's output cannot be changed on its own"
            )
        projection = getattr(module, attribute)
        if projection.in_features % heads:
            return f"{name}.{attribute} takes {projection.in_features} features, not a whole number per head"
        return EditPoint(projection, heads, kernel=target.eager_because is None)


ADAPTER = TimmAdapter()

#: The names timm gives an attention's output projection (``attn_out_proj``: the parallel blocks).
PROJECTIONS = ("proj", "out_proj", "o_proj", "attn_out_proj")


def _target(adapter: str, name: str, module, everything: dict, payload: Payload) -> Target:
    plan, placement = payload.plan, payload.placement
    if placement is not None:
        layout = _static_windows(placement)
    else:
        layout = CHANNELS if plan.layout == "channels" else TOKENS
    target = Target(
        name,
        module,
        adapter,
        kind=plan.kind,
        block=block_of(name, everything),
        layout=layout,
        payload=payload,
    )
    target.eager_because = _rebuild(module, plan)
    return target


def _rebuild(module, plan: Plan) -> str | None:
    """None where the module's fused path is one scaled_dot_product_attention call whose inputs
    define the map; else why the map is computed eagerly."""
    name = type(module).__qualname__
    shaped = plan.shape is not None and not plan.fused_shaped
    if plan.derive is not None or shaped or plan.variable != "attn" or not plan.switch:
        return f"{name}'s map is not one softmax of its queries and keys"
    if plan.layout == "channels":
        return f"{name} attends across channels"
    if getattr(module, "fused_attn", None) is not True:
        return f"{name}.fused_attn is off, so the module computes its map itself"
    return None


class _Unwatch:
    """A handle-like wrapper: ``remove()`` calls the function."""

    __slots__ = ("function",)

    def __init__(self, function) -> None:
        self.function = function

    def remove(self) -> None:
        remove = getattr(self.function, "remove", None)
        (remove or self.function)()


def _static_windows(placement: Placement) -> Windows:
    """The layout declared before any call: from the block's configured feature size where it has one."""
    block = placement.block
    size = getattr(block, "input_resolution", None) or getattr(block, "feat_size", None)
    window = getattr(block, "window_size", None) or getattr(block, "partition_size")
    window = (window, window) if isinstance(window, int) else tuple(int(w) for w in window)
    shift = tuple(int(s) for s in getattr(block, "shift_size", (0, 0)))
    if size is None:
        return Windows(window=window, grid=(1, 1))
    size = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    grid = (-(-size[0] // window[0]), -(-size[1] // window[1]))
    return Windows(window=window, grid=grid, shift=shift, tokens=size, shift_before_pad=True)


class _Layouts:
    """The recorder the taps report to: fixes each map's shape and adds the layout of the call."""

    def __init__(self, recorder) -> None:
        self.recorder = recorder
        self.current: dict[int, Windows] = {}  # id(target) -> the layout of its running call

    def follow(self, target, placement: Placement):
        def pre_hook(block, args, kwargs):
            inputs = args if args else tuple(kwargs.values())
            if inputs:
                self.current[id(target)] = placement.windows(block, inputs)

        return placement.block.register_forward_pre_hook(pre_hook, with_kwargs=True)

    def ran(self, target) -> None:
        self.recorder.ran(target)

    def ran_hook(self, target):
        return lambda module, args: self.recorder.ran(target)

    def kernel_calls(self, target, calls) -> None:
        """A lazy target's forward ended: one kernel call gives its Recipe."""
        if len(calls) == 1:
            calls[0].layout = self.current.get(id(target))
            self.recorder.record(calls[0])
            return
        self.recorder.missing(target, _sdpa.not_one_call(type(target.module).__qualname__, len(calls)))

    def record(self, call: AttentionCall) -> None:
        target = call.target
        shape = target.payload.plan.shape
        if shape is not None and hasattr(call.probabilities, "dim"):
            call.probabilities = shape(target.module, call.probabilities)
        call.layout = self.current.get(id(target), call.layout)
        self.recorder.record(call)

    def missing(self, target, cause: str) -> None:
        self.recorder.missing(target, cause)


def _function(cls, plan: Plan):
    """The function holding ``plan.variable`` behind ``cls.<plan.method>``, or None."""
    method = getattr(cls, plan.method, None)
    if method is None:
        return None
    try:
        return resolve(method, (plan.variable,), "timm attention")
    except (TypeError, ValueError):
        return None


def _detach(scopes, switched, handles) -> None:
    for release in switched:
        release()
    for handle in handles:
        handle.remove()
    scopes.close()


def _cause(target, function, unbound) -> str:
    variable = target.payload.plan.variable
    switched = (
        f" although capture switched {target.name}.fused_attn off"
        if isinstance(getattr(target.module, "fused_attn", None), bool)
        else ""
    )
    return (
        f"{describe(function)} returned without assigning {variable!r}{switched}; this path of the class "
        f"does not keep the probabilities in {variable!r}. Decorate the function that computes them with "
        "get_local('<name>') instead."
    )
