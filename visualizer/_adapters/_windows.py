"""Attribute values recorded inside functions to the module whose forward is running.

timm's ``Attention.forward`` and functions users decorate with ``get_local`` compute the
attention map in a local variable. A get_local tap hands over that variable when the
function returns; this module works out which module instance it belongs to. Each
watched module opens a *window* when its forward starts (a forward pre-hook) and closes
it when it ends (a forward hook that also runs on exceptions). A value goes to the
innermost open window, in this thread, whose module owns the function, so nested and
recursive modules each get their own calls.
"""

from __future__ import annotations

import threading

__all__ = ["Windows"]


class _Window:
    __slots__ = ("functions", "misses", "target", "values")

    def __init__(self, target, functions) -> None:
        self.target = target
        self.functions = functions
        self.values: list = []
        self.misses: list[str] = []


class Windows:
    """Module windows and get_local taps for one capture.

    ``cause`` builds the message for a call whose variable was unassigned:
    ``cause(target, function, unbound_names) -> str``.
    """

    def __init__(self, recorder, cause, core) -> None:
        self.core = core  # the GetLocal whose taps carry the values
        self.recorder = recorder
        self.cause = cause
        self.local = threading.local()
        self.handles: list = []
        self.taps: list = []
        self.loose: dict = {}  # function -> target, for functions no module owns

    def _stack(self) -> list[_Window]:
        stack = getattr(self.local, "stack", None)
        if stack is None:
            stack = self.local.stack = []
        return stack

    def watch(self, target, functions) -> None:
        """Attribute values of ``functions`` that return during ``target.module``'s forward."""
        functions = frozenset(functions)

        def opened(module, args):
            self.recorder.ran(target)
            self._stack().append(_Window(target, functions))

        def closed(module, args, output):
            stack = self._stack()
            while stack:  # a forward that raised may have left inner windows open
                window = stack.pop()
                if window.target is target:
                    break
            else:
                return
            for value in window.values:
                self.recorder.record(target, value)
            for cause in window.misses:
                self.recorder.missing(target, cause)

        self.handles.append(target.module.register_forward_pre_hook(opened))
        self.handles.append(target.module.register_forward_hook(closed, always_call=True))

    def loose_function(self, function, target) -> None:
        """Record ``function``'s values outside any watched module under ``target``."""
        self.loose[function] = target

    def tap(self, function, variable: str) -> None:
        """Receive ``variable`` from ``function`` each time it returns.

        If the user already captures ``function`` with get_local under several names, the
        tap shares that capture (see ``GetLocal.open_tap``).
        """

        def on_record(value):
            window = self._owner(function)
            if window is not None:
                window.values.append(value)
            elif function in self.loose:
                target = self.loose[function]
                self.recorder.ran(target)
                self.recorder.record(target, value)

        def on_missing(unbound):
            window = self._owner(function)
            target = window.target if window is not None else self.loose.get(function)
            if target is None:
                return
            cause = self.cause(target, function, unbound)
            if window is not None:
                window.misses.append(cause)
            else:
                self.recorder.ran(target)
                self.recorder.missing(target, cause)

        self.taps.append(self.core.open_tap(function, variable, on_record, on_missing))

    def _owner(self, function) -> _Window | None:
        for window in reversed(self._stack()):
            if function in window.functions:
                return window
        return None

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()
        for tap in self.taps:
            tap.close()
        self.handles.clear()
        self.taps.clear()
