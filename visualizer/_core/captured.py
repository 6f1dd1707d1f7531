"""One function captured in place: its instrumented code, its recorder and its warnings.

The instrumented code calls back into a :class:`Captured` entry: :meth:`Captured.record`
on the slow path (values that need converting), and :meth:`Captured.missing` when a
captured variable was unassigned at the return.

An entry serves two kinds of consumer. The *user*, through ``get_local(...)``, gets records
in ``get_local.cache`` while capture is active. *Taps* (:class:`Tap`, opened by
``capture_attention``) get every raw value, unconverted, for as long as they are open,
whether or not get_local is active, and without touching the user's cache. One
instrumented code object serves both, so the two never fight over ``__code__``.
"""

from __future__ import annotations

import sys
import threading
import types
import warnings
import weakref

from visualizer._core.records import PASSTHROUGH, Channel, convert
from visualizer._core.rewrite import NEVER, bind, cached_instrument
from visualizer._core.targets import describe
from visualizer._errors import CaptureWarning

__all__ = ["Captured", "Tap"]


# Set while this thread converts a record: a captured function that the conversion runs
# (a container subclass's method, say) is not the user's call, and must not record again.
_CONVERTING = threading.local()


# Names in a function's code that suggest a fused attention kernel, which never
# materialises the attention map the user asked for.
_FUSED_HINTS = ("fused_attn", "scaled_dot_product_attention", "sdpa", "flash")


def _profiling() -> bool:
    """Whether a profiler runs (sys.setprofile, or sys.monitoring's profiler slot on 3.12+).

    Profilers count calls per code object, and pstats keeps one entry per function name: if
    the code changed to the fast path mid-profile, the calls before the change would vanish
    from the report. So the code stays as it is while one runs (the slow path records the same).
    """
    if sys.getprofile() is not None:
        return True
    monitoring = getattr(sys, "monitoring", None)
    return monitoring is not None and monitoring.get_tool(monitoring.PROFILER_ID) is not None


class Tap:
    """A consumer of one captured function's raw values, open until :meth:`close`.

    ``on_record(value)`` gets each call's value (a tuple for several names) before any
    conversion; ``on_missing(unbound_names)`` is told when a call returned with a captured
    variable unassigned. Both run inside the captured function's return, so they must be
    quick and must not raise.
    """

    __slots__ = ("entry", "on_missing", "on_record")

    def __init__(self, entry: Captured, on_record, on_missing) -> None:
        self.entry = entry
        self.on_record = on_record
        self.on_missing = on_missing

    @property
    def function(self) -> types.FunctionType | None:
        """The function whose code is instrumented for this tap."""
        return self.entry.func_ref()

    def close(self) -> None:
        """Stop receiving values; the function gets its original code back if nobody else needs it."""
        self.entry.owner._untap(self)


class Captured:
    """One function captured in place: its code, its names, and where its records go."""

    __slots__ = (
        "__weakref__",
        "channel",
        "func_ref",
        "guard",
        "installed",
        "key",
        "misses",
        "names",
        "original",
        "owner",
        "taps",
        "user",
        "warned",
    )

    def __init__(self, owner, func: types.FunctionType, names: tuple, key: str | None) -> None:
        """``owner`` is the GetLocal whose lock and store this entry uses; ``key`` is None
        for an entry that only taps use (it never appears in the user's cache)."""
        self.owner = owner
        self.func_ref = weakref.ref(func)
        self.names = names
        self.key = key
        self.user = key is not None  # captured through get_local(...), not only tapped
        self.taps: tuple[Tap, ...] = ()
        self.channel: Channel | None = None  # opened on first install: no cache key before capture is on
        self.original: types.CodeType | None = None
        self.installed: types.CodeType | None = None
        self.guard: type = NEVER  # the one exact type the fast path accepts, set on first use
        self.warned: set[str] = set()  # the kinds of warning already given
        self.misses = 0

    @property
    def recording(self) -> bool:
        """Whether records go to the user's cache now."""
        return self.user and self.owner._active

    # -- code swapping (callers hold the owner's lock) ---------------------------------

    def adopt(self, key: str) -> None:
        """The user now captures this function too (it was only tapped): records get ``key``."""
        self.key = key
        if self.owner._active:  # the channel must exist before `recording` turns true
            channel = self.channel = self.owner._store.channel(key)
            channel.listeners.add(self)
        self.user = True
        self.sync()
        self.rebind()

    def disown(self) -> None:
        """The user stops capturing this function (get_local.undo); taps may still use it."""
        self.user = False
        if self.channel is not None:
            self.channel.listeners.discard(self)
            self.channel = None
        self.sync()
        self.rebind()

    def sync(self) -> None:
        """Install or remove the instrumented code, as the user's state and the taps need."""
        if self.recording or self.taps:
            self.install()
        else:
            self.uninstall()

    def install(self) -> None:
        func = self.func_ref()
        if func is None:
            return
        if self.recording and self.channel is None:
            self.channel = self.owner._store.channel(self.key)
            self.channel.listeners.add(self)
        if self.installed is not None and func.__code__ is self.installed:
            return
        self.original = func.__code__
        self._swap_in(func)

    def uninstall(self) -> None:
        func, installed, original = self.func_ref(), self.installed, self.original
        self.installed = None
        if func is None or installed is None or original is None:
            return
        if func.__code__ is installed:
            func.__code__ = original
        else:
            warnings.warn(
                f"get_local: the code of {describe(func)} was replaced by someone else while "
                "it was being captured; leaving their version in place.",
                CaptureWarning,
                stacklevel=3,
            )

    def rebind(self) -> None:
        """Re-point the installed code at the channel's current list and options."""
        with self.owner._lock:
            func = self.func_ref()
            if func is None or self.installed is None or func.__code__ is not self.installed:
                return
            self._swap_in(func)

    def _swap_in(self, func: types.FunctionType) -> None:
        """Give ``func`` the instrumented code, bound to the current list, guard and options."""
        # Taps see every value, so the bytecode fast path (which bypasses Python) is off then.
        channel, original = self.channel, self.original
        if original is None:  # install() sets it before the first swap
            raise RuntimeError(f"get_local: {describe(func)} has no original code to instrument")
        fast = channel is not None and channel.fast and self.recording and not self.taps
        self.installed = bind(
            cached_instrument(original, self.names),
            recorder=self.record if len(self.names) == 1 else self.record_many,
            on_missing=self.missing,
            records=channel.records if channel is not None and fast else None,
            guard=self.guard if fast else NEVER,
        )
        func.__code__ = self.installed

    # -- called from the instrumented code ----------------------------------------------

    def record(self, value) -> None:
        """The slow path for one variable: convert, store, maybe enable the fast path."""
        if getattr(_CONVERTING, "on", False):
            return
        for tap in self.taps:
            tap.on_record(value)
        channel = self.channel
        if channel is None or not self.recording:
            return
        if type(value) in PASSTHROUGH:
            channel.add(value)
            if self.guard is NEVER:
                self.guard = type(value)
                if channel.fast and not self.taps and not _profiling():
                    self.rebind()
        else:
            channel.add(self._convert(value))

    def record_many(self, *values) -> None:
        if getattr(_CONVERTING, "on", False):
            return
        for tap in self.taps:
            tap.on_record(values)
        channel = self.channel
        if channel is None or not self.recording:
            return
        for value in values:
            if type(value) not in PASSTHROUGH:
                values = tuple([self._convert(value) for value in values])
                break
        channel.add(values)

    def _convert(self, value):
        store = self.owner._store.store
        _CONVERTING.on = True
        try:
            return convert(value, store)
        except RecursionError:  # returning at the recursion limit: not even a warning fits
            return value
        except Exception as exc:  # never break the user's function over a record
            self._warn_once(
                "conversion",
                f"get_local: could not keep a value of type {type(value).__name__} from "
                f"{self.key} as {store!r} ({type(exc).__name__}: {exc}); it was stored as it is.",
            )
            return value
        finally:
            _CONVERTING.on = False

    def missing(self, exc: BaseException) -> None:
        """The probe found a variable unassigned: record nothing for this call, warn once."""
        taps, recording = self.taps, self.recording
        if recording:
            self.misses += 1
        if not taps and (not recording or "missing" in self.warned):
            return
        frame = exc.__traceback__.tb_frame if exc.__traceback__ is not None else None
        unbound = [name for name in self.names if frame is None or name not in frame.f_locals]
        del frame, exc
        unbound = unbound or list(self.names)
        for tap in taps:
            tap.on_missing(unbound)
        if recording:
            self._warn_once("missing", self._missing_message(unbound), stacklevel=3)

    def _missing_message(self, unbound: list[str]) -> str:
        func = self.func_ref()
        where = describe(func) if func is not None else self.key
        names = " and ".join(repr(name) for name in unbound)
        code = self.original
        fused = code is not None and any(hint in name for name in code.co_names for hint in _FUSED_HINTS)
        if fused:
            cause = (
                "Likely cause: this function takes a fused attention path (it refers to "
                "fused_attn / scaled_dot_product_attention), and a fused kernel never "
                f"computes {names}. Fix: make it take the unfused path while capturing, e.g. "
                "`module.fused_attn = False` on each timm attention module, or "
                '`model.set_attn_implementation("eager")` for a transformers model.'
            )
        else:
            cause = (
                f"Likely cause: the branch that assigns {names} did not run (an early return, "
                "or an if/else that skips it), or it was deleted. Fix: capture a variable "
                "that is assigned on every path, or make the function take that branch."
            )
        if func is None:
            spelled = "..."
        else:  # what the user would type: Attention.forward, not forward (nested: its plain name)
            spelled = func.__name__ if "<locals>" in func.__qualname__ else func.__qualname__
        return (
            f"get_local: {where} returned without a value for {names}, so nothing was "
            f"recorded for that call. {cause} (Warned once per function; "
            f"get_local.misses({spelled}) counts them.)"
        )

    def _warn_once(self, kind: str, message: str, stacklevel: int = 4) -> None:
        if kind not in self.warned:
            self.warned.add(kind)
            warnings.warn(message, CaptureWarning, stacklevel=stacklevel)
