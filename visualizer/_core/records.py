"""The records store: what a captured call leaves behind, and where it is kept.

``get_local.cache`` is a :class:`RecordCache`, a dict ``{key: [record, ...]}``. Each
captured function appends to the list under its key through a :class:`Channel`. The
fast path in the function's own bytecode appends to that exact list object, so the dict
keeps the two in step when someone mutates it directly.

Conversion (:func:`convert`) is lazy about frameworks: a value can only be a tensor if
torch is already in ``sys.modules``, so this module never imports torch or numpy.
"""

from __future__ import annotations

import collections
import copy
import copyreg
import sys
import threading
import weakref
from typing import Any

__all__ = ["PASSTHROUGH", "STORES", "Channel", "RecordCache", "RecordStore", "Records", "convert"]

#: How tensors are kept: "numpy" (detached CPU copy; bf16, which numpy lacks, widened to float32),
#: "tensor" (detached copy on its device), "graph" (the tensor itself, autograd graph included).
STORES = ("numpy", "tensor", "graph")

#: Exact types whose values are immutable and kept as they are under every store.
PASSTHROUGH = frozenset({type(None), bool, int, float, complex, str, bytes})


class Records(list):
    """One key's records, oldest first: a list.

    It hashes by identity so that a code object, which hashes its constants, may hold
    it. Copies and pickles are plain lists.
    """

    __slots__ = ()
    __hash__ = object.__hash__  # type: ignore[assignment]

    def __reduce_ex__(self, protocol):
        return (list, (list(self),))

    def __copy__(self):
        return list(self)

    def __deepcopy__(self, memo):
        return copy.deepcopy(list(self), memo)


class RecordCache(dict):
    """``get_local.cache``: ``{key: list of records}``, a dict.

    Captured functions keep appending to the lists held here even when the dict is
    changed directly: assigning a list makes that list the one appended to, and a
    deleted key comes back with the next record. Copies and pickles are plain dicts.
    """

    __slots__ = ("_store",)

    def __init__(self, store: RecordStore) -> None:
        super().__init__()
        self._store = store

    def __setitem__(self, key, value) -> None:
        self._store.check_assignment(key, value)
        super().__setitem__(key, value)
        self._store.sync((key,))

    def __delitem__(self, key) -> None:
        super().__delitem__(key)
        self._store.sync((key,))

    def pop(self, key, *default):
        value = super().pop(key, *default)
        self._store.sync((key,))
        return value

    def popitem(self):
        key, value = super().popitem()
        self._store.sync((key,))
        return key, value

    def clear(self) -> None:
        keys = list(self)
        super().clear()
        self._store.sync(keys)

    def setdefault(self, key, default=None):
        if key not in self:
            self[key] = default
        return self[key]

    def update(self, *args, **kwargs) -> None:
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def __ior__(self, other):  # type: ignore[misc]
        self.update(other)
        return self

    def copy(self) -> dict:
        return dict(self)

    __copy__ = copy

    def __deepcopy__(self, memo):
        return copy.deepcopy(dict(self), memo)

    def __reduce_ex__(self, protocol):
        return (dict, (dict(self),))

    @classmethod
    def fromkeys(cls, keys, value=None) -> dict:
        return dict.fromkeys(keys, value)


class Channel:
    """Where one key's records go.

    ``records`` is the list in the cache under ``key``; ``attached`` is False after the
    key was deleted from the cache, until the next record puts it back. Listeners (the
    captured functions of this key) are told when ``records`` changes, so that their
    fast paths append to the right list.
    """

    __slots__ = ("attached", "key", "listeners", "records", "store")

    def __init__(self, store: RecordStore, key: str, records: list) -> None:
        self.store = store
        self.key = key
        self.records = records
        self.attached = True
        self.listeners: weakref.WeakSet = weakref.WeakSet()

    @property
    def fast(self) -> bool:
        """Whether bytecode may LIST_APPEND to ``records`` directly."""
        return self.attached and type(self.records) is Records and self.store.max_records is None

    def add(self, record) -> None:
        """Append one record, dropping the oldest beyond the bound; thread-safe."""
        records = self.records
        records.append(record)
        bound = self.store.max_records
        if bound is not None and len(records) > bound:
            del records[:-bound]
        if not self.attached:
            self.store.reattach(self)

    def notify(self) -> None:
        for listener in list(self.listeners):
            listener.rebind()


class RecordStore:
    """The cache, its channels, and the options that say how values are kept."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.cache = RecordCache(self)
        self._channels: dict[str, Channel] = {}
        self.store = "numpy"
        self.max_records: int | None = None

    def channel(self, key: str) -> Channel:
        """The channel for ``key``, created (with an empty list in the cache) if new."""
        with self.lock:
            channel = self._channels.get(key)
            if channel is None:
                records = dict.get(self.cache, key)
                if not isinstance(records, list):
                    records = Records()
                    dict.__setitem__(self.cache, key, records)
                channel = self._channels[key] = Channel(self, key, records)
            elif not channel.attached:
                self.reattach(channel)
            return channel

    def restart(self, key: str) -> None:
        """Start ``key`` afresh for a function captured anew, if no captured function uses it now.

        The records of an earlier capture of that key (before get_local.undo) leave the cache;
        lists handed out before keep them.
        """
        with self.lock:
            channel = self._channels.get(key)
            if channel is not None and not channel.listeners:
                del self._channels[key]
                if dict.get(self.cache, key) is channel.records:
                    dict.__delitem__(self.cache, key)

    def check_assignment(self, key, value) -> None:
        if key in self._channels and not isinstance(value, list):
            raise TypeError(
                f"get_local.cache[{key!r}] holds the records of a captured function and must "
                f"be a list, not {type(value).__name__}"
            )

    def sync(self, keys) -> None:
        """Bring the channels of ``keys`` in line with what the cache now holds."""
        with self.lock:
            for key in keys:
                channel = self._channels.get(key)
                if channel is None:
                    continue
                current = dict.get(self.cache, key)
                if current is channel.records and channel.attached:
                    continue
                if current is None:  # deleted: collect anew; the key returns with a record
                    channel.records, channel.attached = Records(), False
                else:
                    channel.records, channel.attached = current, True
                channel.notify()

    def reattach(self, channel: Channel) -> None:
        with self.lock:
            if channel.attached:
                return
            if dict.get(self.cache, channel.key) is None:
                dict.__setitem__(self.cache, channel.key, channel.records)
            else:  # someone put a list there meanwhile: that one wins, ours joins it
                existing = dict.__getitem__(self.cache, channel.key)
                existing.extend(channel.records)
                channel.records = existing
            channel.attached = True
            channel.notify()

    def clear(self) -> None:
        """Empty the cache. Lists handed out before keep their records.

        Keys of captured functions come back empty; keys of functions no longer captured
        (get_local.undo) go.
        """
        with self.lock:
            dict.clear(self.cache)
            for key, channel in list(self._channels.items()):
                if not channel.listeners:
                    del self._channels[key]
                    continue
                channel.records, channel.attached = Records(), True
                dict.__setitem__(self.cache, channel.key, channel.records)
                channel.notify()

    def configure(self, store: str | None, max_records) -> None:
        with self.lock:
            if store is not None:
                self.store = store  # read by the recorders on each call: nothing to rebind
            if max_records is not _UNSET and max_records != self.max_records:
                self.max_records = max_records  # turns the bytecode fast path on or off
                for channel in self._channels.values():
                    channel.notify()


class _Unset:
    def __repr__(self) -> str:
        return "<unset>"


_UNSET = _Unset()


def convert(value, store: str):
    """What is kept of ``value`` under ``store`` (one of :data:`STORES`).

    Tensors, including those nested in lists, tuples, dicts and sets, are kept as the
    store says; numpy arrays are copied; containers are rebuilt around converted items;
    anything else is kept as it is.
    """
    return _convert(value, store, ())


_CONTAINERS = (list, tuple, dict, set, frozenset)


def _convert(value, store: str, ancestors: tuple):
    """``ancestors``: ids of the containers being rebuilt around ``value``, to stop at cycles."""
    if type(value) in PASSTHROUGH:
        return value
    if isinstance(value, _CONTAINERS):
        if id(value) in ancestors:  # a cycle: keep the reference
            return value
        return _rebuild(value, store, (*ancestors, id(value)))
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        return _convert_tensor(value, store, torch)
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(value, numpy.ndarray):
        return value.copy()
    return value


def _rebuild(container, store: str, ancestors: tuple):
    """A copy of ``container`` around converted items, of the same type where possible.

    A subclass of a built-in container is rebuilt through its built-in base alone: its own
    ``__new__``, ``__init__`` and ``__setitem__`` never run (they may be captured code, or
    have side effects), and its instance attributes and slots are copied, an attribute that
    held a converted item getting the converted one (a ModelOutput keeps its fields twice).
    """
    kind = type(container)
    if isinstance(container, dict):
        items = {
            key: item if type(item) in PASSTHROUGH else _convert(item, store, ancestors)
            for key, item in container.items()
        }
        if kind is dict:
            return items
        converted = {id(container[key]): item for key, item in items.items() if item is not container[key]}
        return _subclass_copy(container, kind, list(items.items()), converted) or items
    elements: Any
    for item in container:
        if type(item) not in PASSTHROUGH:
            elements = [_convert(item, store, ancestors) for item in container]
            break
    else:  # nothing to convert (the common case): a shallow copy will do
        elements = container
    if kind in (list, tuple, set, frozenset):
        return kind(elements)
    converted = {}
    if elements is not container:
        converted = {id(old): new for old, new in zip(container, elements, strict=True) if new is not old}
    rebuilt = _subclass_copy(container, kind, list(elements), converted)
    if rebuilt is not None:
        return rebuilt
    base = next(base for base in (list, tuple, set, frozenset) if isinstance(container, base))
    return base(elements)


def _subclass_copy(container, kind: type, contents: list, converted: dict):
    """``kind`` rebuilt around ``contents`` through built-in methods only; None if that fails."""
    rebuilt: Any
    try:
        if isinstance(container, collections.OrderedDict):
            rebuilt = collections.OrderedDict.__new__(kind)
            for key, value in contents:
                collections.OrderedDict.__setitem__(rebuilt, key, value)
        elif isinstance(container, dict):
            rebuilt = dict.__new__(kind)
            if isinstance(container, collections.defaultdict):
                factory = vars(collections.defaultdict)["default_factory"]  # the C member, not a subclass's
                factory.__set__(rebuilt, container.default_factory)
            dict.update(rebuilt, contents)
        elif isinstance(container, list):
            rebuilt = list.__new__(kind)
            list.extend(rebuilt, contents)
        elif isinstance(container, set):
            rebuilt = set.__new__(kind)
            set.update(rebuilt, contents)
        elif isinstance(container, tuple):
            rebuilt = tuple.__new__(kind, contents)  # a namedtuple too, as its _make does
        else:
            rebuilt = frozenset.__new__(kind, contents)
        state = getattr(container, "__dict__", None)
        if state:
            object.__getattribute__(rebuilt, "__dict__").update(
                {name: converted.get(id(value), value) for name, value in state.items()}
            )
        for name in copyreg._slotnames(kind):  # type: ignore[attr-defined]
            try:
                value = object.__getattribute__(container, name)
            except AttributeError:
                continue
            object.__setattr__(rebuilt, name, converted.get(id(value), value))
        return rebuilt
    except Exception:  # an exotic subclass: the caller keeps its base type
        return None


def _convert_tensor(tensor, store: str, torch):
    if store == "graph":
        return tensor
    tensor = tensor.detach()
    if store == "tensor":
        return tensor.clone()
    return _to_numpy(tensor, torch)


def _to_numpy(tensor, torch):
    """A numpy array that owns its memory: a snapshot, not a view of the tensor."""
    import numpy  # torch's .numpy() needs it, so it is installed

    if tensor.is_nested:
        return [_to_numpy(part, torch) for part in tensor.unbind()]
    fresh = False  # whether `tensor` is already a private copy
    if tensor.layout is not torch.strided:
        tensor, fresh = tensor.to_dense(), True
    if tensor.is_quantized:
        tensor, fresh = tensor.dequantize(), True
    if tensor.device.type != "cpu":
        tensor, fresh = tensor.cpu(), True  # before widening: moves half the bytes for bf16
    wider = _wider_dtype(tensor.dtype, torch)
    if wider is not None:
        tensor, fresh = tensor.to(wider), True
    tensor = tensor.resolve_conj().resolve_neg()
    if fresh:
        return tensor.numpy()
    # A fresh array that owns its memory, filled by torch's copy, which runs on all of torch's
    # threads: a single-threaded numpy copy of large maps into new pages was most of get_local's
    # cost on long sequences (a 96 MB map: up to 0.2 s, against 0.01-0.15 s here).
    array = numpy.empty(tuple(tensor.shape), dtype=tensor.numpy().dtype)
    torch.from_numpy(array).copy_(tensor)
    return array


def _wider_dtype(dtype, torch):
    """The dtype numpy can hold for ``dtype``, or None when numpy has it already."""
    if dtype == torch.bfloat16 or "float8" in str(dtype):  # numpy has float16, as the original kept it
        return torch.float32
    if dtype == torch.complex32:
        return torch.complex64
    return None
