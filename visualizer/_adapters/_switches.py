"""Settings a capture switches (timm's ``fused_attn``, transformers' attention implementation),
held by every capture that needs them and restored when the last one lets go.

>>> release = hold(module, "fused_attn")
>>> module.fused_attn = False            # for as long as some capture holds it
>>> release()                            # the last release puts the original value back

Captures of one model nest and overlap in any order (start A, start B, stop A, stop B): a
setting saved and restored per capture would be put back by A while B still needs it, and
B would restore A's switched value for good.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from visualizer._sessions import SESSIONS

__all__ = ["hold"]


def hold(obj: Any, attribute: str) -> Callable[[], None]:
    """Hold ``obj.attribute``: its value now is the one restored when the last holder releases.

    The original value and the count of holders are ``obj``'s part ``"held <attribute>"`` in
    the registry of sessions. Returns the release function; calling it more than once
    releases once.
    """
    name = f"held {attribute}"
    with SESSIONS.lock:
        held = SESSIONS.part(obj, name, lambda: [getattr(obj, attribute), 0])
        held[1] += 1
    released = False

    def release() -> None:
        nonlocal released
        with SESSIONS.lock:
            if released:
                return
            released = True
            held[1] -= 1
            if held[1] == 0:
                setattr(obj, attribute, held[0])
                SESSIONS.drop(obj, name, held)

    return release
