"""Editors and gradient taps on a model's attention calls, at each call's edit point.

>>> class ZeroHead:
...     def edit(self, call):
...         out = call.output.clone()
...         out[:, 3] = 0                      # (batch, heads, queries, head dim)
...         return out
>>> with Seam(model, editors=[ZeroHead()], modules=["blocks.5.attn"]):
...     logits = model(images)

The edit point of a call is its kernel's output split by head, which is exactly what the
module's output projection receives (each adapter's ``edit_point`` says where that holds,
and why not elsewhere). A Seam finds the model's attention modules as the capture does,
refuses loudly any selected module without an edit point, and watches the rest through
``_sdpa``; a module whose forward then makes no kernel call raises, so no edit is silently
skipped. Seams, captures and other seams on one model nest and overlap in any order; a model
copied or pickled while a seam is open is copied without it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from visualizer._adapters import _sdpa, adapters, find_targets
from visualizer._copy_guard import guard, release

__all__ = ["EditPointError", "Seam"]


class EditPointError(ValueError):
    """Some selected attention module offers no edit point; the message names each and why."""


class Seam:
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
        self.model = model
        self.editors = tuple(editors)
        self.taps = tuple(taps)
        for editor in self.editors:
            if not callable(getattr(editor, "edit", None)):
                raise TypeError(f"an editor needs an edit(call) method; {type(editor).__name__} has none")
        for tap in self.taps:
            if not callable(getattr(tap, "gradient", None)) or not isinstance(
                getattr(tap, "detach_scores", None), bool
            ):
                raise TypeError(
                    "a gradient tap needs a gradient(call, grad) method and a bool detach_scores; "
                    f"{type(tap).__name__} lacks one"
                )
        if not self.editors and not self.taps:
            raise ValueError("Seam needs at least one editor or gradient tap")
        if isinstance(modules, str):
            raise TypeError(f"modules must be a list of module paths, not the string {modules!r}")
        self.modules = None if modules is None else list(modules)
        self.targets: list = []
        self._closers: list[Callable[[], None]] = []
        self._guarded: list = []  # the modules made copyable while this seam is open

    def __enter__(self) -> Seam:
        self.open()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()

    def open(self) -> None:
        """Attach the editors and taps; raises :class:`EditPointError` naming every selected module
        that has no edit point, and attaches nothing then."""
        from visualizer._core import get_local

        if self._guarded:
            raise RuntimeError("this Seam is already open")
        targets, refusals = find_targets(self.model, get_local)
        by_name = {target.name: target for target in targets}
        refused = {refusal.name: refusal.reason for refusal in refusals}
        if self.modules is not None:
            unknown = [name for name in self.modules if name not in by_name and name not in refused]
            if unknown:
                known = ", ".join(sorted(by_name)) or "none"
                raise KeyError(f"no attention module named {unknown}; the model's attention modules: {known}")
            targets = [by_name[name] for name in self.modules if name in by_name]
            refused = {name: reason for name, reason in refused.items() if name in self.modules}
        if not targets and not refused:
            raise ValueError(f"{type(self.model).__name__} has no attention module the seam can find")
        points = {adapter.name: adapter for adapter in adapters(available_only=False)}
        for target in targets:
            reason = points[target.adapter].edit_point(target)
            if reason is not None:
                refused[target.name] = reason
        if refused:
            listed = "\n".join(f"- {name}: {reason}" for name, reason in refused.items())
            raise EditPointError(
                f"{len(refused)} attention module(s) offer no edit point for editors and gradient taps:\n"
                f"{listed}\nPass modules=[...] to act on the others."
            )
        self.targets = targets
        self._attach()
        self._guarded = list(self.model.modules())
        guard(self, self._guarded)

    def close(self) -> None:
        """Take every editor and tap off; the model and ``torch.nn.functional`` are as before."""
        self.suspend()
        release(self, self._guarded)
        self._guarded = []

    def suspend(self) -> None:
        """Take the seam off the model for a moment (a copy of it is being made); see resume()."""
        closers, self._closers = self._closers, []
        for close in reversed(closers):
            close()

    def resume(self) -> None:
        """Put the seam back after suspend()."""
        self._attach()

    def _attach(self) -> None:
        try:
            for target in self.targets:
                self._closers.append(
                    _sdpa.watch(target, target.module, _made_a_call, editors=self.editors, taps=self.taps)
                )
        except BaseException:
            self.suspend()
            raise


def _made_a_call(target, calls: list) -> None:
    """Raise where a watched forward made no kernel call: its editors and taps did nothing."""
    if not calls:
        raise RuntimeError(
            f"{target.name}'s forward made no call to torch.nn.functional.scaled_dot_product_attention, so "
            "the editors and gradient taps attached to it did nothing. Its fused kernel was switched off "
            "(a capture with lazy=False, fused_attn=False, or an eager attention implementation)."
        )
