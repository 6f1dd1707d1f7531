"""Attribute values recorded inside functions to the module whose forward is running.

timm's ``Attention.forward`` and functions users decorate with ``get_local`` compute the
attention map in a local variable. A get_local tap hands over that variable when the
function returns; this module works out which module instance it belongs to. Each
watched module opens a *scope* when its forward starts (a forward pre-hook) and closes
it when it ends (a forward hook that also runs on exceptions). A value goes to the
innermost open scope, in this thread, whose module owns the function, so nested and
recursive modules each get their own calls.
"""

from __future__ import annotations

import threading

from visualizer._adapters._events import AttentionCall

__all__ = ["ForwardScopes"]


class _Scope:
    __slots__ = ("functions", "misses", "target", "values")

    def __init__(self, target, functions) -> None:
        self.target = target
        self.functions = functions
        self.values: list = []
        self.misses: list[str] = []


class ForwardScopes:
    """Forward scopes and get_local taps for one capture.

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

    def _stack(self) -> list[_Scope]:
        stack = getattr(self.local, "stack", None)
        if stack is None:
            stack = self.local.stack = []
        return stack

    def watch(self, target, functions) -> None:
        """Attribute values of ``functions`` that return during ``target.module``'s forward."""
        functions = frozenset(functions)

        def opened(module, args):
            self.recorder.ran(target)
            self._stack().append(_Scope(target, functions))

        def closed(module, args, output):
            stack = self._stack()
            while stack:  # a forward that raised may have left inner scopes open
                scope = stack.pop()
                if scope.target is target:
                    break
            else:
                return
            for value in scope.values:
                self.recorder.record(AttentionCall(target, "local", probabilities=value))
            for cause in scope.misses:
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
            scope = self._owner(function)
            if scope is not None:
                scope.values.append(value)
            elif function in self.loose:
                target = self.loose[function]
                self.recorder.ran(target)
                self.recorder.record(AttentionCall(target, "local", probabilities=value))

        def on_missing(unbound):
            scope = self._owner(function)
            target = scope.target if scope is not None else self.loose.get(function)
            if target is None:
                return
            cause = self.cause(target, function, unbound)
            if scope is not None:
                scope.misses.append(cause)
            else:
                self.recorder.ran(target)
                self.recorder.missing(target, cause)

        self.taps.append(self.core.open_tap(function, variable, on_record, on_missing))

    def _owner(self, function) -> _Scope | None:
        for scope in reversed(self._stack()):
            if function in scope.functions:
                return scope
        return None

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()
        for tap in self.taps:
            tap.close()
        self.handles.clear()
        self.taps.clear()
