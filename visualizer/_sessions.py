"""One process-wide registry of sessions: everything captures and seams change, by object.

Captures and seams nest and overlap in any order on one model, and several threads may run
them. What they change is owned here, not by module globals:

- per object (a module, a config, ``torch.backends.mha``), a :class:`Session` holding named
  *parts*: the pair of hooks that watches a module's kernel calls (``_sdpa``), the hooks of a
  ``MultiheadAttention`` (``torch_mha``), each held setting (``_switches``), the copy guard
  (``_copy_guard``). A part is made by the first capture that needs it and dropped by the
  last; a session with no part left is gone;
- process-wide patches (the ``scaled_dot_product_attention`` wrapper), installed while anyone
  holds them and put back when the last lets go;
- the per-thread state of running forwards (:attr:`Registry.local`).

One re-entrant lock guards them all.

>>> part = SESSIONS.part(module, "kernel", make)     # made once, shared by every capture
>>> SESSIONS.drop(module, "kernel")                   # the last one done
>>> release = SESSIONS.acquire("sdpa wrapper", install)   # install() returns the undo
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import Any

__all__ = ["SESSIONS", "Registry", "Session"]


class Session:
    """What captures and seams changed on one object, by part name."""

    __slots__ = ("__weakref__", "parts")

    def __init__(self) -> None:
        self.parts: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"<Session {sorted(self.parts)}>"


class Registry:
    """The sessions of every object, the process-wide patches, the per-thread state; see the module."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.local = threading.local()
        self._sessions: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # object -> Session
        # objects that cannot be weakly referenced, held while they have a part: id -> (object, Session)
        self._strong: dict[int, tuple[Any, Session]] = {}
        self._patches: dict[str, list] = {}  # name -> [holders, undo]

    def _session(self, obj: Any, create: bool) -> Session | None:
        try:
            session = self._sessions.get(obj)
        except TypeError:  # not weakly referenceable
            held = self._strong.get(id(obj))
            session = held[1] if held is not None and held[0] is obj else None
            if session is None and create:
                session = Session()
                self._strong[id(obj)] = (obj, session)
            return session
        if session is None and create:
            session = self._sessions[obj] = Session()
        return session

    def _forget(self, obj: Any) -> None:
        try:
            del self._sessions[obj]
        except TypeError:
            del self._strong[id(obj)]

    def part(self, obj: Any, name: str, make: Callable[[], Any]) -> Any:
        """``obj``'s part ``name``, made by ``make()`` if it has none yet."""
        with self.lock:
            session = self._session(obj, create=True)
            assert session is not None
            part = session.parts.get(name)
            if part is None:
                part = session.parts[name] = make()
            return part

    def get(self, obj: Any, name: str) -> Any:
        """``obj``'s part ``name``, or None."""
        with self.lock:
            session = self._session(obj, create=False)
            return None if session is None else session.parts.get(name)

    def drop(self, obj: Any, name: str, part: Any = None) -> None:
        """Drop ``obj``'s part ``name`` (only if it is ``part``, where given); a session left with
        no part is gone."""
        with self.lock:
            session = self._session(obj, create=False)
            if session is None or name not in session.parts:
                return
            if part is not None and session.parts[name] is not part:
                return
            del session.parts[name]
            if not session.parts:
                self._forget(obj)

    def holders(self, name: str) -> list:
        """The objects that have a part ``name``."""
        with self.lock:
            sessions = [*self._sessions.items(), *self._strong.values()]
            return [obj for obj, session in sessions if name in session.parts]

    def acquire(self, name: str, install: Callable[[], Callable[[], None]]) -> Callable[[], None]:
        """Hold the process-wide patch ``name``: ``install()`` (which returns its undo) runs for the
        first holder, the undo when the last releases. Returns the release (idempotent)."""
        with self.lock:
            patch = self._patches.get(name)
            if patch is None:
                patch = self._patches[name] = [0, install()]
            patch[0] += 1
        released = False

        def release() -> None:
            nonlocal released
            with self.lock:
                if released:
                    return
                released = True
                patch[0] -= 1
                if patch[0] == 0:
                    if self._patches.get(name) is patch:
                        del self._patches[name]
                    patch[1]()

        return release

    def patched(self, name: str) -> bool:
        """Whether someone holds the process-wide patch ``name``."""
        with self.lock:
            return name in self._patches

    def __len__(self) -> int:
        """How many objects have a session now."""
        with self.lock:
            return len(self._sessions) + len(self._strong)

    def __repr__(self) -> str:
        with self.lock:
            return f"<Registry {len(self)} sessions, patches {sorted(self._patches)}>"


#: The one registry of the process.
SESSIONS = Registry()
