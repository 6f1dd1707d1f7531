"""Copying or pickling a model during a capture gives a model without the capture.

>>> with capture_attention(model) as maps:
...     twin = copy.deepcopy(model)          # no hooks, no switched settings: the model as it was
...     torch.save(model, "model.pt")        # likewise

A capture changes a model while it runs: hooks on its modules (closures that hold locks and
thread-local state, which cannot be copied or pickled), ``fused_attn`` switches, attention
implementations. While any capture is open on a module, the module carries ``__deepcopy__``
and ``__reduce_ex__`` of its own (``copy`` and ``pickle`` look them up on the instance) that
take every capture open on it off, copy, and put them back. A pickle is made from a deep
copy taken that way, since pickle reads the module tree only after ``__reduce_ex__`` returns.
Nothing runs in the copy, so nothing is lost from the maps.
"""

from __future__ import annotations

import copy
import weakref
from typing import Any

from visualizer._sessions import SESSIONS

__all__ = ["guard", "release"]

#: The name of a module's open captures in the registry of sessions (``visualizer._sessions``).
PART = "copy guard"
_NAMES = ("__deepcopy__", "__reduce_ex__")


def guard(capture: Any, modules: list) -> None:
    """Make ``modules`` copyable while ``capture`` is open (it has ``suspend()`` and ``resume()``)."""
    with SESSIONS.lock:
        for module in modules:
            opened = SESSIONS.get(module, PART)
            if opened is None:
                opened = SESSIONS.part(module, PART, list)
                _install(module)
            opened.append(capture)


def release(capture: Any, modules: list) -> None:
    """``capture`` has closed: its modules copy as usual once no other capture is open on them."""
    with SESSIONS.lock:
        for module in modules:
            opened = SESSIONS.get(module, PART)
            if opened is None:
                continue
            opened[:] = [other for other in opened if other is not capture]
            if not opened:
                SESSIONS.drop(module, PART, opened)
                _uninstall(module)


def _install(module) -> None:
    ref = weakref.ref(module)
    object.__setattr__(module, "__deepcopy__", lambda memo: _deepcopy(ref(), memo))
    object.__setattr__(module, "__reduce_ex__", lambda protocol: _reduce(ref(), protocol))


def _uninstall(module) -> None:
    for name in _NAMES:
        module.__dict__.pop(name, None)


def _bare(module, work):
    """Run ``work()`` with every capture open on ``module`` off and no copy hooks anywhere."""
    with SESSIONS.lock:
        captures = list(SESSIONS.get(module, PART) or ())
        guarded = SESSIONS.holders(PART)
        for other in guarded:
            _uninstall(other)
        suspended = []
        try:
            for capture in reversed(captures):
                capture.suspend()
                suspended.append(capture)
            return work()
        finally:
            for capture in reversed(suspended):
                capture.resume()
            for other in guarded:
                if SESSIONS.get(other, PART) is not None:
                    _install(other)


def _deepcopy(module, memo):
    return _bare(module, lambda: copy.deepcopy(module, memo))


def _reduce(module, protocol):
    twin = _bare(module, lambda: copy.deepcopy(module))
    return twin.__reduce_ex__(protocol)
