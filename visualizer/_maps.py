"""The result of :func:`capture_attention`: attention maps by module path and layer index.

>>> with capture_attention(vit) as maps:
...     vit(images)
>>> maps["blocks.3.attn"].shape, maps[3].shape    # (batch, heads, queries, keys)
>>> maps.stack().shape                            # (layers, batch, heads, queries, keys)

Entries follow model order. A module that ran several times keeps every call, in order;
``maps[name]`` then asks which call you mean (``maps[name, -1]``, ``maps.calls(name)``)
rather than picking one silently.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["AttentionMaps", "Entry"]


class Entry:
    """What was captured from one attention module (or one get_local function).

    ``index`` is the module's position among all attention modules found in the model,
    in model order, so it stays the same whichever layers are selected; a get_local
    function that no module of the model runs (``module=False``) comes after them. ``kind`` is
    ``"self"`` or ``"cross"``; ``role`` is ``"encoder"``, ``"decoder"`` or None; ``layer``
    is the path of the block it belongs to (``"decoder.layers.0"``), used to group the
    self- and cross-attention of one decoder layer.
    """

    __slots__ = (
        "calls",
        "dropped",
        "index",
        "kind",
        "layer",
        "misses",
        "module",
        "name",
        "role",
        "runs",
        "source",
    )

    def __init__(
        self, name: str, index: int, kind: str, role: str | None, layer: str, source: str, module: bool = True
    ) -> None:
        self.name = name
        self.module = module  # False: a get_local function recorded wherever it runs
        self.index = index
        self.kind = kind
        self.role = role
        self.layer = layer
        self.source = source
        self.calls: list = []
        self.runs = 0  # forward calls seen, with or without weights
        self.misses: list[str] = []  # why calls produced no weights
        self.dropped = 0  # oldest calls dropped by max_calls

    def __repr__(self) -> str:
        shapes = ", ".join(str(tuple(call.shape)) for call in self.calls[:3])
        more = f", ... {len(self.calls)} calls" if len(self.calls) > 3 else ""
        maps = shapes or "no maps"
        return f"<{self.name} [{self.index}] {self.kind}-attention via {self.source}: {maps}{more}>"


class AttentionMaps(Sequence):
    """Attention maps captured from one model: a sequence of (batch, heads, queries, keys) tensors.

    Look up by module path (``maps["blocks.3.attn"]``) or by layer index (``maps[3]``,
    ``maps[-1]``); an index counts all attention modules of the model in model order.
    ``len(maps)`` is the number of layers captured, iteration yields their maps in model
    order, ``maps.names`` their paths and ``maps.items()`` both.

    A layer that ran several times (loops, shared layers, generation steps) keeps each
    call: ``maps.calls(name)`` lists them, ``maps[name, i]`` picks one, and ``maps[name]``
    raises rather than guess.
    """

    def __init__(
        self, entries: Sequence[Entry], model_name: str = "model", modules: int | None = None
    ) -> None:
        """``modules``: how many attention modules the model has, selected or not (negative
        indices count back from it); by default, one past the highest module index given."""
        self._entries = list(entries)
        self._by_name = {entry.name: entry for entry in self._entries}
        self._by_index = {entry.index: entry for entry in self._entries}
        if modules is None:
            modules = max((entry.index for entry in self._entries if entry.module), default=-1) + 1
        self._count = modules
        self._model_name = model_name
        self.diagnosis: str | None = None  # why maps are missing, when some are; set by the capture

    # -- what was captured ----------------------------------------------------------------

    @property
    def names(self) -> list[str]:
        """Paths of the captured layers, in model order."""
        return [entry.name for entry in self._captured()]

    def entries(self) -> list[Entry]:
        """Every selected attention module, captured or not, with its calls and diagnosis."""
        return list(self._entries)

    def items(self) -> list[tuple]:
        """``[(path, map), ...]`` in model order."""
        return [(entry.name, self._single(entry)) for entry in self._captured()]

    def calls(self, key) -> list:
        """Every call's map of one layer, in order: a list of (batch, heads, queries, keys)."""
        return list(self._entry(key).calls)

    def __len__(self) -> int:
        return len(self._captured())

    def __iter__(self):
        for entry in self._captured():
            yield self._single(entry)

    def __contains__(self, key) -> bool:
        try:
            return bool(self._entry(key).calls)
        except (KeyError, IndexError, TypeError):
            return False

    def __getitem__(self, key):
        if isinstance(key, slice):
            wanted = range(self._count)[key]
            return [
                self._single(self._by_index[i])
                for i in wanted
                if i in self._by_index and self._by_index[i].calls
            ]
        if isinstance(key, tuple):
            if len(key) != 2:
                raise KeyError(f"AttentionMaps takes [layer] or [layer, call], not {key!r}")
            layer, call = key
            entry = self._entry(layer)
            if not isinstance(call, int) or isinstance(call, bool):
                raise TypeError(f"the call number must be an int, not {type(call).__name__}")
            if not -len(entry.calls) <= call < len(entry.calls):
                raise IndexError(
                    f"{entry.name!r} has {len(entry.calls)} call(s) captured; call {call} is out of range"
                )
            return entry.calls[call]
        return self._single(self._entry(key))

    # -- shapes for analysis ---------------------------------------------------------------

    def stack(self, call: int | None = None):
        """All captured layers as one tensor: (layers, batch, heads, queries, keys).

        ``call`` picks which call of each layer, when layers ran more than once.
        """
        import torch

        maps = self._maps(call)
        shapes = {tuple(m.shape) for m in maps}
        if len(shapes) > 1:
            listed = ", ".join(f"{name} {tuple(m.shape)}" for name, m in zip(self.names, maps))
            raise ValueError(
                f"cannot stack maps of different shapes: {listed}. Select layers of one shape with "
                "capture_attention(model, layers=...), or stack a subset yourself."
            )
        return torch.stack(maps)

    def structured(self, call: int | None = None) -> dict:
        """Maps grouped as an encoder-decoder model is built.

        ``{'encoder': [{'self_attention': map}, ...],
        'decoder': [{'self_attention': map, 'cross_attention': map}, ...]}``, one dict per
        layer in model order; encoder-only models have only ``'encoder'``.
        """
        maps = self._maps(call)
        result: dict[str, list[dict]] = {}
        layers: dict[tuple, dict] = {}
        for entry, attention in zip(self._captured(), maps):
            role = entry.role or "encoder"
            group = layers.get((role, entry.layer))
            if group is None:
                group = layers[(role, entry.layer)] = {}
                result.setdefault(role, []).append(group)
            label = f"{entry.kind}_attention"
            if label in group:  # two modules of one kind in one block: keep both, by path
                label = f"{label}:{entry.name}"
            group[label] = attention
        return result

    def clear(self) -> None:
        """Forget every captured call (between batches in a long loop, say)."""
        for entry in self._entries:
            entry.calls.clear()
            entry.runs = entry.dropped = 0
            entry.misses.clear()

    def __repr__(self) -> str:
        captured = self._captured()
        if not captured:
            why = f" {self.diagnosis}" if self.diagnosis else ""
            return f"<AttentionMaps of {self._model_name}: nothing captured.{why}>"
        lines = [f"<AttentionMaps of {self._model_name}: {len(captured)} layers"]
        for entry in captured:
            shape = tuple(entry.calls[-1].shape)
            calls = f" x {len(entry.calls)} calls" if len(entry.calls) > 1 else ""
            name = entry.name or "'' (the model itself)"
            lines.append(f"  [{entry.index}] {name}: {entry.kind}-attention {shape}{calls}")
        return "\n".join(lines) + ">"

    # -- internals ---------------------------------------------------------------------------

    def _captured(self) -> list[Entry]:
        return [entry for entry in self._entries if entry.calls]

    def _expected(self) -> list[Entry]:
        """The entries that should have run: every module, and the functions that did run."""
        return [entry for entry in self._entries if entry.module or entry.runs]

    def _entry(self, key) -> Entry:
        if isinstance(key, bool) or not isinstance(key, (int, str)):
            raise TypeError(
                f"look maps up by module path (str) or layer index (int), not {type(key).__name__}"
            )
        if isinstance(key, str):
            entry = self._by_name.get(key)
            if entry is None:
                raise KeyError(self._unknown(repr(key)))
        else:
            index = key + self._count if key < 0 else key
            entry = self._by_index.get(index)
            if entry is None:
                if not 0 <= index < self._count:  # (functions beyond the modules are found above)
                    raise IndexError(
                        f"layer {key} is out of range: {self._model_name} has {self._count} attention "
                        f"modules (0..{self._count - 1})"
                    )
                raise KeyError(self._unknown(f"layer {key}"))
        if not entry.calls:
            raise KeyError(self._nothing_from(entry))
        return entry

    def _unknown(self, what: str) -> str:
        names = [f"[{entry.index}] {entry.name}" for entry in self._entries]
        shown = ", ".join(names[:16]) + (f", ... ({len(names)} in all)" if len(names) > 16 else "")
        return f"{what} was not captured; selected layers: {shown or '(none)'}"

    def _nothing_from(self, entry: Entry) -> str:
        if entry.misses:
            return (
                f"{entry.name!r} ran {entry.runs} time(s) without producing attention weights: "
                f"{entry.misses[0]}"
            )
        if entry.runs:
            return f"{entry.name!r} ran {entry.runs} time(s) but recorded no map"
        why = (
            f" {self.diagnosis}" if self.diagnosis else " Call the model inside the capture_attention block."
        )
        return f"{entry.name!r} did not run while capture was on.{why}"

    def _single(self, entry: Entry):
        if len(entry.calls) > 1:
            raise ValueError(
                f"{entry.name!r} ran {len(entry.calls)} times during capture; say which call you mean: "
                f"maps[{entry.name!r}, -1] for the last, maps.calls({entry.name!r}) for all of them, "
                "or maps.stack(call=i) / maps.structured(call=i) for call i of every layer."
            )
        return entry.calls[0]

    def _maps(self, call: int | None) -> list:
        captured = self._captured()
        if not captured:
            raise LookupError(self.__repr__())
        if call is None:
            return [self._single(entry) for entry in captured]
        return [self[entry.name, call] for entry in captured]
