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

import threading
from collections.abc import Callable
from typing import Any

__all__ = ["hold"]

_HELD: dict[tuple[int, str], list] = {}  # (id(obj), attribute) -> [obj, original, holders]
_LOCK = threading.Lock()


def hold(obj: Any, attribute: str) -> Callable[[], None]:
    """Hold ``obj.attribute``: its value now is the one restored when the last holder releases.

    Returns the release function; calling it more than once releases once.
    """
    key = (id(obj), attribute)
    with _LOCK:
        held = _HELD.get(key)
        if held is None or held[0] is not obj:
            held = _HELD[key] = [obj, getattr(obj, attribute), 0]
        held[2] += 1
    released = False

    def release() -> None:
        nonlocal released
        with _LOCK:
            if released:
                return
            released = True
            held[2] -= 1
            if held[2] == 0:
                setattr(obj, attribute, held[1])
                if _HELD.get(key) is held:
                    del _HELD[key]

    return release
