"""``get_local``: record a function's local variables every time it returns.

The decorator rewrites nothing while inactive: it returns the very function it was
given and remembers it. :meth:`GetLocal.activate` swaps each remembered function's
``__code__`` for an instrumented copy, in place, so functions that classes and modules
already hold start recording, whatever the import order; :meth:`GetLocal.deactivate`
swaps the original back.
"""

from __future__ import annotations

import contextlib
import dataclasses
import types
import warnings
import weakref
from collections.abc import Callable, Mapping
from typing import Any

from visualizer._core.captured import Captured, Tap
from visualizer._core.records import _UNSET, STORES, RecordCache, RecordStore
from visualizer._core.targets import describe, resolve, wrapped_chain
from visualizer._errors import CaptureWarning, RewriteError

__all__ = ["CaptureInfo", "GetLocal", "get_local"]


class _Decorator:
    """What ``get_local(*names)`` returns: applies the capture to one function."""

    __slots__ = ("names", "owner")

    def __init__(self, owner: GetLocal, names: tuple) -> None:
        self.owner = owner
        self.names = names

    def __call__(self, obj):
        return self.owner._capture(obj, self.names)

    def __repr__(self) -> str:
        return f"get_local({', '.join(map(repr, self.names))})"


class GetLocal:
    """Record local variables of functions each time they return.

    >>> @get_local("attn")
    ... def attention(q, k):
    ...     attn = (q * k) / 2
    ...     return attn + 1
    >>> get_local.activate()
    >>> attention(3, 4)
    7.0
    >>> get_local.cache["attention"]
    [6.0]

    Decorating changes nothing until activation, and works in place on third-party
    code too: ``get_local("attn")(SomeLibrary.Attention.forward)``.
    """

    def __init__(self) -> None:
        self._store = RecordStore()
        # One lock for the functions and the store: clear() rebinds functions while holding
        # the store, and activate() opens store channels while holding the functions.
        self._lock = self._store.lock
        self._captured: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._owners: dict[str, str] = {}  # qualname -> module of the first function using it
        self._active = False

    def __call__(self, *names: str) -> _Decorator:
        """A decorator recording ``names`` (one value per call, or a tuple for several)."""
        return _Decorator(self, _check_names(names))

    def __repr__(self) -> str:
        state = "active" if self._active else "inactive"
        functions = sum(entry.user for entry in self._captured.values())
        return f"<get_local: {state}, {functions} functions, store={self._store.store!r}>"

    # -- the state ------------------------------------------------------------------------

    @property
    def cache(self) -> RecordCache:
        """``{key: [record per completed call, ...]}``, keyed by ``__qualname__``.

        If a captured function's qualname is already used by a function from another
        module, its key is ``"module.qualname"`` instead (a CaptureWarning says so, and
        :meth:`key_of` tells you).
        """
        return self._store.cache

    @cache.setter
    def cache(self, value) -> None:
        """``get_local.cache = {}`` empties the cache, as it did in the original tool (there it
        bound a new dict): :meth:`clear`, then the given dict's items, if any, put in."""
        if value is self._store.cache:  # `get_local.cache |= {...}` assigns it back
            return
        if not isinstance(value, Mapping):
            raise TypeError(
                f"get_local.cache = ... takes a dict ({{}} empties the cache, as get_local.clear() does), "
                f"not {type(value).__name__}"
            )
        items = dict(value)
        self._store.clear()
        self._store.cache.update(items)

    @property
    def is_activate(self) -> bool:
        """Whether capture is on (the original tool's name); assigning it (de)activates."""
        return self._active

    @is_activate.setter
    def is_activate(self, value: bool) -> None:
        if value:
            self.activate()
        else:
            self.deactivate()

    def activate(self) -> None:
        """Start capturing every decorated function, whenever it was defined or imported."""
        with self._lock:
            self._active = True
            failures = []
            for entry in list(self._captured.values()):
                try:
                    entry.sync()
                except Exception as exc:
                    failures.append(str(exc))
            if failures:
                raise RewriteError("get_local.activate(): " + "\n\n".join(failures))

    def deactivate(self) -> None:
        """Stop capturing: every function gets its original code back. Records stay."""
        with self._lock:
            self._active = False
            for entry in list(self._captured.values()):
                entry.sync()  # an entry that capture_attention taps stays instrumented

    @contextlib.contextmanager
    def activated(self, *, store: str | None = None, max_records=_UNSET):
        """Capture inside a ``with`` block, then restore the previous state and options.

        >>> with get_local.activated(store="tensor") as cache:
        ...     model(x)

        The cache is the one :attr:`cache`, cumulative like the original tool's: records of
        functions still captured from before the block stay (call :meth:`clear` first for an
        empty one); a function captured anew after :meth:`undo` starts with none.
        """
        with self._lock:
            was_active = self._active
            previous = self.configure(store=store, max_records=max_records)
            self.activate()
        try:
            yield self.cache
        finally:
            with self._lock:
                self.configure(**previous)
                if not was_active:
                    self.deactivate()

    def configure(self, *, store: str | None = None, max_records=_UNSET) -> dict:
        """Set how records are kept; returns the previous settings.

        store: ``"numpy"`` (default: tensors become detached CPU numpy copies, fp16 kept,
            bf16 as float32), ``"tensor"`` (detached copies on their device) or ``"graph"``
            (the tensors themselves, autograd graph included, for gradient methods).
        max_records: at most this many records per key, the oldest dropped as new ones
            arrive; ``None`` for no bound.
        """
        if store is not None and store not in STORES:
            raise ValueError(
                f"get_local.configure(): store must be one of {', '.join(map(repr, STORES))}, not {store!r}"
            )
        if max_records is not _UNSET and max_records is not None:
            if isinstance(max_records, bool) or not isinstance(max_records, int):
                raise TypeError(
                    f"get_local.configure(): max_records must be a positive int or None, not {max_records!r}"
                )
            if max_records < 1:
                raise ValueError(
                    "get_local.configure(): max_records must be at least 1 (or None for no bound), "
                    f"not {max_records}"
                )
        with self._lock:
            previous = {"store": self._store.store, "max_records": self._store.max_records}
            self._store.configure(store, max_records)
        return previous

    def clear(self) -> None:
        """Empty the cache. Lists taken from it before keep their records."""
        self._store.clear()

    # -- per function ---------------------------------------------------------------------

    def undo(self, obj):
        """Stop capturing ``obj`` for good: its original code comes back. Returns ``obj``.

        Its records stay in the cache until :meth:`clear`; capturing it again starts its key
        afresh, so an ``activated()`` block after that shows only the new capture's records.
        """
        func = self._find(obj, "get_local.undo")
        with self._lock:
            entry = self._captured[func]
            entry.disown()
            if not entry.taps:
                del self._captured[func]
        return obj

    def key_of(self, obj) -> str:
        """The cache key of a captured function."""
        return self._captured[self._find(obj, "get_local.key_of")].key

    def misses(self, obj) -> int:
        """How many calls of ``obj`` returned with a captured variable unassigned."""
        return self._captured[self._find(obj, "get_local.misses")].misses

    def _find(self, obj, what: str) -> types.FunctionType:
        chain = wrapped_chain(obj, what)
        for func in chain:
            entry = self._captured.get(func)
            if entry is not None and entry.user:
                return func
        raise ValueError(f"{what}: {describe(chain[0])} is not captured by get_local")

    def _capture(self, obj, names: tuple):
        what = f"get_local({', '.join(map(repr, names))})"
        func = resolve(obj, names, what)
        with self._lock:
            entry = self._captured.get(func)
            if entry is not None:
                if entry.names != names:
                    if not entry.user:
                        raise ValueError(
                            f"{what}: {describe(func)} is being captured by capture_attention with "
                            f"the name(s) {', '.join(map(repr, entry.names))}; decorate it after "
                            "the capture_attention block ends, or with those names."
                        )
                    raise ValueError(
                        f"{what}: {describe(func)} is already captured with "
                        f"get_local({', '.join(map(repr, entry.names))}); "
                        f"call get_local.undo({func.__name__}) first to capture other names."
                    )
                if not entry.user:
                    key = self._key(func)
                    self._store.restart(key)
                    entry.adopt(key)
                return obj
            key = self._key(func)
            self._store.restart(key)  # a capture anew does not inherit the records of an undone one
            entry = self._captured[func] = Captured(self, func, names, key)
            if self._active:
                try:
                    entry.install()
                except Exception:
                    del self._captured[func]
                    raise
        return obj

    # -- the internal API: what capture_attention and the adapters use ------------------

    def captures(self) -> list[CaptureInfo]:
        """Every function the user captures with ``get_local(...)``, as :class:`CaptureInfo`."""
        with self._lock:
            return [_info(func, entry) for func, entry in list(self._captured.items()) if entry.user]

    def capture_of(self, obj) -> CaptureInfo | None:
        """How ``obj`` (a function, or anything wrapping one) is captured now, by the user or by taps;
        None when it is not."""
        try:
            chain = wrapped_chain(obj, "get_local.capture_of")
        except TypeError:
            return None
        with self._lock:
            for func in chain:
                entry = self._captured.get(func)
                if entry is not None:
                    return _info(func, entry)
        return None

    def open_tap(
        self,
        obj,
        variable: str,
        on_record: Callable[[Any], None],
        on_missing: Callable[[list[str]], None],
    ) -> Tap:
        """Send ``variable``'s raw value to ``on_record`` each time ``obj`` returns, until the tap closes.

        Works whether or not capture is active, and leaves :attr:`cache` alone. If the user
        already captures ``obj`` with several names including ``variable``, the tap shares that
        capture and hands over only ``variable``. ``on_missing(unbound_names)`` hears of calls
        that returned with it unassigned. Both run inside the function's return: they must be
        quick and must not raise. Close the returned :class:`Tap` to stop.
        """
        func = resolve(obj, (variable,), f"capture of {variable!r}")
        with self._lock:
            entry = self._captured.get(func)
            names = entry.names if entry is not None and variable in entry.names else (variable,)
        if len(names) == 1:
            return self._tap(func, names, on_record, on_missing)
        position = names.index(variable)
        return self._tap(func, names, lambda values: on_record(values[position]), on_missing)

    def reset(self) -> None:
        """Back to a fresh state: nothing captured, inactive, default options, empty cache.

        Open taps keep their functions instrumented until they close.
        """
        self.deactivate()
        for info in self.captures():
            self.undo(info.function)
        self.configure(store="numpy", max_records=None)
        self.clear()
        with self._lock:
            self._owners.clear()

    # -- taps: raw values for capture_attention, apart from the user's cache ----------

    def _tap(self, obj, names: tuple, on_record, on_missing) -> Tap:
        """Instrument ``obj`` (if it is not already) and send each call's raw value to ``on_record``.

        Works whether or not capture is active, and leaves ``cache`` alone. Close the
        returned :class:`Tap` to stop; the original code comes back once nobody needs it.
        """
        what = f"capture of {', '.join(map(repr, names))}"
        func = resolve(obj, names, what)
        with self._lock:
            entry = self._captured.get(func)
            if entry is None:
                entry = self._captured[func] = Captured(self, func, names, None)
            elif entry.names != names:
                raise ValueError(
                    f"{describe(func)} is captured with get_local({', '.join(map(repr, entry.names))}), "
                    f"so it cannot also be captured for {', '.join(map(repr, names))}; call "
                    f"get_local.undo({func.__name__}) first."
                )
            tap = Tap(entry, on_record, on_missing)
            entry.taps = (*entry.taps, tap)
            try:
                entry.sync()
            except Exception:
                self._untap(tap)
                raise
            entry.rebind()  # the bytecode fast path skips taps: turn it off
        return tap

    def _untap(self, tap: Tap) -> None:
        entry = tap.entry
        with self._lock:
            if tap not in entry.taps:
                return
            entry.taps = tuple(other for other in entry.taps if other is not tap)
            entry.sync()
            entry.rebind()
            func = entry.func_ref()
            if not entry.user and not entry.taps and func is not None:
                self._captured.pop(func, None)

    def _key(self, func: types.FunctionType) -> str:
        qualname, module = func.__qualname__, func.__module__ or "<unknown>"
        owner = self._owners.setdefault(qualname, module)
        if owner == module:
            return qualname
        key = f"{module}.{qualname}"
        warnings.warn(
            f"get_local: {qualname!r} from module {module!r} shares its qualname with a "
            f"captured function from {owner!r}; its records go under {key!r} "
            f"(get_local.key_of(func) tells you the key of any captured function).",
            CaptureWarning,
            stacklevel=4,
        )
        return key


@dataclasses.dataclass(frozen=True)
class CaptureInfo:
    """How one function is captured: its variable names, its cache key (None when only taps use
    it), whether the user captures it with ``get_local(...)``, and how many taps are open."""

    function: types.FunctionType
    names: tuple[str, ...]
    key: str | None
    user: bool
    taps: int


def _info(func: types.FunctionType, entry: Captured) -> CaptureInfo:
    return CaptureInfo(func, entry.names, entry.key if entry.user else None, entry.user, len(entry.taps))


def _check_names(names: tuple) -> tuple[str, ...]:
    if not names:
        raise TypeError("get_local() needs the name of at least one variable, e.g. get_local('attn')")
    if len(names) == 1 and callable(names[0]) and not isinstance(names[0], str):
        raise TypeError(
            "get_local needs the variable names first: write @get_local('attn_map'), not @get_local"
        )
    for name in names:
        if not isinstance(name, str):
            hint = " (pass several names as separate arguments)" if isinstance(name, (list, tuple)) else ""
            raise TypeError(f"get_local() takes variable names as str, not {type(name).__name__}{hint}")
        if not name.isidentifier():
            raise ValueError(f"get_local(): {name!r} is not a valid Python variable name")
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"get_local(): {', '.join(map(repr, duplicates))} given more than once")
    return tuple(names)


get_local = GetLocal()
