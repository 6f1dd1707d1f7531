"""Editors and gradient taps on a model's attention calls, at each call's edit point.

>>> class ZeroHead:
...     def edit(self, call):
...         out = call.output.clone()
...         out[:, 3] = 0                      # (batch, heads, queries, head dim)
...         return out
>>> with Seam(model, editors=[ZeroHead()], modules=["blocks.5.attn"]):
...     logits = model(images)

The edit point of a call is the input of its module's output projection, split by head
(each adapter's ``edit_point`` names the projection and the heads, or says why a module has
none). A Seam finds the model's attention modules as the capture does, refuses loudly any
selected module without an edit point, and puts a pre-hook on each projection; where the
module runs ``scaled_dot_product_attention``, it also watches the kernel call (``_sdpa``), so
the event the editors see carries the queries, keys and values, and a gradient tap may run
the kernel on detached queries and keys (a module that then makes no kernel call raises).
Seams, captures and other seams on one model nest and overlap in any order; a model
copied or pickled while a seam is open is copied without it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from visualizer._adapters import _sdpa, adapters, find_targets
from visualizer._adapters._events import AttentionCall, EditPoint
from visualizer._copy_guard import guard, release
from visualizer._errors import EditPointError

__all__ = ["EditPointError", "KernelTaps", "Seam", "edit_points"]


class _Attached:
    """What a Seam and KernelTaps share: open once (``_select`` what to act on, ``_attach``
    it, guard the model's modules for copying), close, and suspend/resume around a copy."""

    model: Any
    what = "this Seam"

    def __init__(self) -> None:
        self.targets: list = []
        self._closers: list[Callable[[], None]] = []
        self._guarded: list = []  # the modules made copyable while open

    def __enter__(self):
        self.open()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()

    def open(self) -> None:
        """Attach; raises :class:`EditPointError` naming every selected module that cannot be acted
        on, and attaches nothing then."""
        if self._guarded:
            raise RuntimeError(f"{self.what} is already open")
        self._select()
        self._attach()
        self._guarded = list(self.model.modules())
        guard(self, self._guarded)

    def close(self) -> None:
        """Take everything off; the model and ``torch.nn.functional`` are as before."""
        self.suspend()
        release(self, self._guarded)
        self._guarded = []

    def suspend(self) -> None:
        """Take it off the model for a moment (a copy of it is being made); see resume()."""
        closers, self._closers = self._closers, []
        for close in reversed(closers):
            close()

    def resume(self) -> None:
        """Put it back after suspend()."""
        self._attach()

    def _select(self) -> None:
        raise NotImplementedError

    def _attach(self) -> None:
        raise NotImplementedError


class Seam(_Attached):
    """Editors and gradient taps attached to the attention calls of ``model`` while open.

    ``editors`` follow :class:`~visualizer._adapters._events.Editor`, ``taps``
    :class:`~visualizer._adapters._events.GradientTap`; ``modules`` names the attention
    modules to act on (module paths; None: every attention module of the model).
    """

    def __init__(
        self,
        model: Any,
        *,
        editors: Iterable = (),
        taps: Iterable = (),
        modules: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.editors = tuple(editors)
        self.taps = _checked_taps(taps)
        for editor in self.editors:
            if not callable(getattr(editor, "edit", None)):
                raise TypeError(f"an editor needs an edit(call) method; {type(editor).__name__} has none")
        if not self.editors and not self.taps:
            raise ValueError("Seam needs at least one editor or gradient tap")
        if isinstance(modules, str):
            raise TypeError(f"modules must be a list of module paths, not the string {modules!r}")
        self.modules = None if modules is None else list(modules)
        self._points: list = []  # (target, EditPoint)
        self._local = threading.local()  # .pending: id(target) -> its kernel call awaiting the projection

    def _select(self) -> None:
        points = edit_points(self.model, self.modules, detach=any(tap.detach_scores for tap in self.taps))
        self.targets = [target for target, _ in points]
        self._points = points

    def _attach(self) -> None:
        detach = any(tap.detach_scores for tap in self.taps)
        try:
            for target, point in self._points:
                if point.prepare is not None:
                    self._closers.append(point.prepare())
                at_kernel = point.projection is None  # the kernel's output is the edit point
                if at_kernel or point.kernel:
                    self._closers.append(
                        _sdpa.watch(
                            target,
                            target.module,
                            _made_a_call if at_kernel or detach else _any_calls,
                            on_call=None if at_kernel else self._kernel_call,
                            on_output=self._kernel_output(target) if at_kernel else None,
                            detach_scores=detach,
                        )
                    )
                if not at_kernel:
                    hook = point.projection.register_forward_pre_hook(self._edit_hook(target, point))
                    self._closers.append(hook.remove)
        except BaseException:
            self.suspend()
            raise

    def _pending(self) -> dict:
        pending = getattr(self._local, "pending", None)
        if pending is None:
            pending = self._local.pending = {}
        return pending

    def _kernel_call(self, call: AttentionCall) -> None:
        """A kernel call of a target: its event waits for the target's output projection."""
        self._pending()[id(call.target)] = call

    def _kernel_output(self, target):
        def on_output(call: AttentionCall, output):
            if output.dim() != 4:
                raise ValueError(
                    f"{target.name} called scaled_dot_product_attention with {output.dim()}-D tensors, so "
                    "its output cannot be split by head"
                )
            heads = (
                output.reshape(output.shape[0], call.heads, 1, output.shape[-1]) if call.packed else output
            )
            edited = self._apply(call, heads)
            return output if edited is None else edited.reshape(output.shape)

        return on_output

    def _edit_hook(self, target, point: EditPoint):
        def pre_hook(projection, args):
            if not args or not hasattr(args[0], "unflatten"):
                return None
            inputs = args[0]
            if inputs.dim() < 3:
                raise ValueError(
                    f"{target.name}'s output projection got a {inputs.dim()}-D input; the edit point needs "
                    "(batch, ..., heads x head dim)"
                )
            # (batch, queries, heads x head dim), spatial query axes (batch, h, w, ...) flattened
            tokens = inputs.reshape(inputs.shape[0], -1, inputs.shape[-1])
            heads = tokens.unflatten(-1, (point.heads, -1)).movedim(-2, 1)
            call = self._pending().pop(id(target), None)
            if call is None:
                call = AttentionCall(target, "projection", heads=point.heads)
            edited = self._apply(call, heads)
            if edited is None:
                return None
            return (edited.movedim(1, -2).flatten(-2).reshape(inputs.shape), *args[1:])

        return pre_hook

    def _apply(self, call: AttentionCall, heads):
        """The editors' output for ``heads`` (the call's per-head output), with the taps on it;
        None where nothing changed and no tap needs the graph."""
        call.output = heads
        for editor in self.editors:
            replaced = editor.edit(call)
            if replaced is not None:
                _check(editor, replaced, heads, call.target.name)
                call.output = replaced
        if self.taps and call.output.requires_grad:
            call.output.register_hook(_tap_hook(call, self.taps))
            return call.output
        return None if call.output is heads else call.output


class KernelTaps(_Attached):
    """Gradient taps on the output of each attention module's ``scaled_dot_product_attention``
    call, while open: ``tap.gradient(call, grad)`` gets the gradient of the kernel's output, split
    by head (batch, heads, queries, head dim), with the event's queries, keys, values and masks.

    Unlike a :class:`Seam` it needs no output projection, only that the module's attention runs
    in one kernel call (``target.eager_because`` None): for a module with something between its
    heads and its projection (a gate, a norm), the gradient is still that of ``A @ V``. Modules
    whose attention is computed eagerly are refused, each named with the reason, before anything
    is attached. ``modules``: module paths (None: every attention module of the model). A tap
    with a ``called(call)`` method is also told of each kernel call as it is made, in forward
    order.
    """

    what = "these KernelTaps"

    def __init__(self, model: Any, taps: Iterable, *, modules: Sequence[str] | None = None) -> None:
        super().__init__()
        self.model = model
        self.taps = _checked_taps(taps)
        if not self.taps:
            raise ValueError("KernelTaps needs at least one gradient tap")
        self.modules = None if modules is None else list(modules)

    def _select(self) -> None:
        targets, refused = _selected(self.model, self.modules)
        for target in targets:
            if target.eager_because is not None:
                refused[target.name] = (
                    f"its attention is computed eagerly, not in one scaled_dot_product_attention call "
                    f"({target.eager_because})"
                )
        _refuse(refused, "no kernel call for gradient taps")
        self.targets = targets

    def _attach(self) -> None:
        adapters_by_name = {adapter.name: adapter for adapter in adapters(available_only=False)}
        named = dict(self.model.named_modules())
        detach = any(tap.detach_scores for tap in self.taps)
        try:
            for target in self.targets:
                point = adapters_by_name[target.adapter].edit_point(target, named)
                if isinstance(point, EditPoint) and point.prepare is not None:
                    self._closers.append(point.prepare())  # (nn.MultiheadAttention: its kernel path)
                self._closers.append(
                    _sdpa.watch(
                        target, target.module, _made_a_call, on_output=self._output, detach_scores=detach
                    )
                )
        except BaseException:
            self.suspend()
            raise

    def _output(self, call: AttentionCall, output):
        if output.dim() != 4:
            raise ValueError(
                f"{call.target.name} called scaled_dot_product_attention with {output.dim()}-D tensors; "
                "the gradient taps need (batch, heads, queries, head dim)"
            )
        for tap in self.taps:  # the forward order of the calls, for taps that need it
            called = getattr(tap, "called", None)
            if called is not None:
                called(call)
        if output.requires_grad:
            call.output = output
            output.register_hook(_kernel_tap_hook(call, self.taps))
        return output


def _kernel_tap_hook(call: AttentionCall, taps: tuple):
    def hook(grad) -> None:
        if call.packed:
            grad = grad.reshape(grad.shape[0], call.heads, 1, grad.shape[-1])
        for tap in taps:
            tap.gradient(call, grad)

    return hook


def edit_points(model: Any, modules: Sequence[str] | None = None, *, detach: bool = False) -> list:
    """``[(target, EditPoint), ...]`` of ``model``'s attention modules in model order (``modules``:
    those module paths only); :class:`EditPointError` naming every selected module that has none
    (with ``detach``, none on the sdpa kernel, as a gradient tap detaching scores needs)."""
    targets, refused = _selected(model, modules)
    adapters_by_name = {adapter.name: adapter for adapter in adapters(available_only=False)}
    named = dict(model.named_modules())
    points = []
    for target in targets:
        point = adapters_by_name[target.adapter].edit_point(target, named)
        if isinstance(point, str):
            refused[target.name] = point
        elif detach and not point.kernel:
            refused[target.name] = (
                f"its attention does not run in one scaled_dot_product_attention call "
                f"({target.eager_because}), so a gradient tap cannot detach its queries and keys"
            )
        else:
            points.append((target, point))
    _refuse(refused, "no edit point for these editors and gradient taps")
    return points


def _selected(model: Any, modules: Sequence[str] | None) -> tuple[list, dict]:
    """The attention modules ``modules`` names (None: all), in model order, and those of them the
    adapters refuse, ``{path: reason}``; a KeyError for names that are no attention module."""
    from visualizer._core import get_local

    targets, refusals = find_targets(model, get_local)
    by_name = {target.name: target for target in targets}
    refused = {refusal.name: refusal.reason for refusal in refusals}
    if modules is not None:
        unknown = [name for name in modules if name not in by_name and name not in refused]
        if unknown:
            known = ", ".join(sorted(by_name)) or "none"
            raise KeyError(f"no attention module named {unknown}; the model's attention modules: {known}")
        targets = [by_name[name] for name in modules if name in by_name]
        refused = {name: reason for name, reason in refused.items() if name in modules}
    if not targets and not refused:
        raise ValueError(f"{type(model).__name__} has no attention module visualizer supports")
    return targets, refused


def _refuse(refused: dict, what: str) -> None:
    """One EditPointError naming every module in ``refused`` and why, if any."""
    if refused:
        listed = "\n".join(
            f"- {reason}" if reason.startswith(name) else f"- {name}: {reason}"
            for name, reason in refused.items()
        )
        raise EditPointError(
            f"{len(refused)} attention module(s) offer {what}:\n{listed}\n"
            "Pass modules=[...] to act on the others."
        )


def _checked_taps(taps: Iterable) -> tuple:
    """``taps`` as a tuple, each with a gradient(call, grad) method and a bool detach_scores."""
    taps = tuple(taps)
    for tap in taps:
        if not callable(getattr(tap, "gradient", None)) or not isinstance(
            getattr(tap, "detach_scores", None), bool
        ):
            raise TypeError(
                "a gradient tap needs a gradient(call, grad) method and a bool detach_scores; "
                f"{type(tap).__name__} lacks one"
            )
    return taps


def _made_a_call(target, calls: list) -> None:
    """A watched forward whose kernel call the seam acts on (its edit point, or a tap detaching its
    queries and keys) made none: say so, rather than act on nothing."""
    if not calls:
        raise RuntimeError(
            f"{target.name}'s forward made no call to torch.nn.functional.scaled_dot_product_attention, so "
            "the editors and gradient taps acting on that call did nothing. Its fused kernel was switched "
            "off (a capture with lazy=False, fused_attn=False, or an eager attention implementation)."
        )


def _any_calls(target, calls: list) -> None:
    """A watched forward whose kernel calls only add queries, keys and values to the events."""


def _tap_hook(call: AttentionCall, taps: tuple):
    def hook(grad) -> None:
        for tap in taps:
            tap.gradient(call, grad)

    return hook


def _check(editor, replaced, heads, name: str) -> None:
    if (
        getattr(replaced, "shape", None) != heads.shape
        or getattr(replaced, "dtype", None) != heads.dtype
        or getattr(replaced, "device", None) != heads.device
    ):
        shape = getattr(replaced, "shape", None)
        got = f"a {type(replaced).__name__}" + (f" of shape {tuple(shape)}" if shape is not None else "")
        raise ValueError(
            f"{type(editor).__name__}.edit returned {got} for {name}; it must return a tensor shaped like "
            f"call.output, {tuple(heads.shape)}, {heads.dtype} on {heads.device}, or None to keep it"
        )
