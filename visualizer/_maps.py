"""The result of :func:`capture_attention`: attention maps with what their framework declares.

>>> with capture_attention(vit) as maps:
...     vit(images)
>>> maps[3].shape, maps["blocks.3.attn"].shape    # (batch, heads, queries, keys)
>>> maps.info(3)                                  # LayerInfo(path='blocks.3.attn', role=None, ...)
>>> maps.stack().shape                            # (layers, batch, heads, queries, keys)

``AttentionMaps`` is a read-only :class:`~collections.abc.Sequence` over the captured layers,
in model order: ``maps[i]`` is the i-th captured layer, ``maps["path"]`` looks a layer up by
module path, and ``maps.at(n)`` by its model-order index among *all* attention modules of the
model (the same as ``maps[n]`` when every layer is captured). A module that ran several
times keeps every call; ``maps[key]`` then asks which call you mean (``maps[key, -1]``,
``maps.calls(key)``) rather than pick one silently.

The capture fills the maps through a :class:`MapsBuilder`; nothing else writes to them.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from typing import Any

from visualizer._generation import share_keys
from visualizer._lazy import BLOCK_ROWS, Recipe
from visualizer._structure import LayerInfo, Layout, Tokens, Windows, require_tokens, window_positions
from visualizer._validate import positions

__all__ = ["CACHE_BYTES", "AttentionMaps", "MapsBuilder"]

#: The default of :attr:`AttentionMaps.cache_bytes`: whole rebuilt maps kept, at most 256 MiB.
CACHE_BYTES = 256 * 2**20


class _Layer:
    """What was captured from one attention module (or get_local function); owned by the builder."""

    __slots__ = ("calls", "dropped", "eager_reason", "info", "keys", "layouts", "misses", "runs")

    def __init__(self, info: LayerInfo) -> None:
        self.info = info  # calls=0 here; LayerInfo handed out carries the live count
        self.calls: list = []
        self.layouts: list[Layout] = []  # one per call
        self.runs = 0  # forward calls seen, with or without weights
        self.misses: list[str] = []  # why calls produced no weights
        self.dropped = 0  # oldest calls dropped by max_calls
        self.eager_reason: str | None = info.eager_reason  # why a call was computed eagerly
        self.keys: Any = None  # the KeyStore the latest rebuilt call's keys extend (generation)

    def public(self) -> LayerInfo:
        layout = self.layouts[-1] if self.layouts else self.info.layout
        rebuilt = bool(self.calls) and isinstance(self.calls[-1], Recipe)
        if not self.calls:
            rebuilt = self.info.rebuilt
        return dataclasses.replace(
            self.info,
            calls=len(self.calls),
            layout=layout,
            rebuilt=rebuilt,
            eager_reason=None if rebuilt else self.eager_reason,
        )


class MapsBuilder:
    """Fills one :class:`AttentionMaps` during a capture: the only writer of its data."""

    def __init__(self, model_name: str, modules: int, max_calls: int | None = None) -> None:
        self._layers: list[_Layer] = []
        self._lock = threading.Lock()
        self._max_calls = max_calls
        self.maps = AttentionMaps._create(self._layers, model_name, modules)

    def add(self, info: LayerInfo) -> int:
        """Register a selected layer; returns its handle for the other methods."""
        self._layers.append(_Layer(info))
        self.maps._index(self._layers[-1])
        return len(self._layers) - 1

    def ran(self, handle: int) -> None:
        self._layers[handle].runs += 1

    def record(self, handle: int, weights: Any, layout: Layout | None) -> None:
        """One call: the map, or the :class:`~visualizer._lazy.Recipe` that rebuilds it."""
        layer = self._layers[handle]
        with self._lock:
            if isinstance(weights, Recipe):  # keys of a KV cache kept once, not once per step
                layer.keys, weights = share_keys(layer.keys, weights)
            layer.calls.append(weights)
            layer.layouts.append(layout if layout is not None else layer.info.layout)
            if self._max_calls is not None and len(layer.calls) > self._max_calls:
                del layer.calls[0]
                del layer.layouts[0]
                layer.dropped += 1

    def note_eager(self, handle: int, reason: str) -> None:
        """The next call of a rebuilt layer is computed eagerly, for ``reason``."""
        self._layers[handle].eager_reason = reason

    def missing(self, handle: int, cause: str) -> None:
        layer = self._layers[handle]
        with self._lock:
            if len(layer.misses) < 8:  # the causes repeat; a few are enough to explain
                layer.misses.append(cause)

    def diagnose(self, text: str | None) -> None:
        self.maps._diagnosis = text

    def status(self, handle: int) -> tuple[int, int, list[str]]:
        """(runs, calls kept, causes of misses) of one layer."""
        layer = self._layers[handle]
        return layer.runs, len(layer.calls), list(layer.misses)


class AttentionMaps(Sequence):
    """Attention maps captured from one model, with each layer's declared structure.

    A sequence over the captured layers in model order; each item is the layer's map,
    (batch, heads, queries, keys) for a tokens layout (see :meth:`info` for windows and
    channels). Keys:

    - ``maps[i]``: the i-th captured layer (negative from the end); ``maps[a:b]`` a list;
    - ``maps["blocks.3.attn"]``: by module path;
    - ``maps[key, call]``: one call of a layer that ran several times;
    - ``maps.at(n)``: by model-order index among all attention modules of the model.

    ``maps.info(key)`` is the layer's :class:`~visualizer._structure.LayerInfo` (path,
    model-order index, role, kind, block, depth, layout, adapter, calls); ``maps.infos`` lists
    them for every captured layer, ``maps.selected`` for every selected one, captured or not.
    """

    _layers: list[_Layer]
    _by_path: dict[str, _Layer]
    _by_index: dict[int, _Layer]
    _model_name: str
    _count: int
    _diagnosis: str | None
    _cache: _MapCache

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError(
            "AttentionMaps come from capture_attention(model), or from plain maps with "
            "AttentionMaps.from_arrays(maps)"
        )

    @classmethod
    def _create(cls, layers: list[_Layer], model_name: str, modules: int) -> AttentionMaps:
        maps = object.__new__(cls)
        maps._layers = layers  # shared with the builder, which alone appends
        maps._by_path, maps._by_index = {}, {}
        maps._model_name = model_name
        maps._count = modules  # attention modules in the model, selected or not
        maps._diagnosis = None
        maps._cache = _MapCache(CACHE_BYTES)
        return maps

    @classmethod
    def from_arrays(
        cls, attentions: Any, *, role: str | None = None, kind: str | None = None
    ) -> AttentionMaps:
        """Plain attention maps as an ``AttentionMaps``, the one input type of every analysis,
        plot and view function (each converts what it is given with this).

        >>> maps = AttentionMaps.from_arrays(outputs.attentions)       # a Hugging Face tuple
        >>> maps = AttentionMaps.from_arrays(outputs)                  # encoder, decoder, cross
        >>> maps = AttentionMaps.from_arrays(np.load("maps.npy"))      # (layers, batch, heads, T, T)

        The rule for plain maps:

        - a tuple or a list holds layers, one map each, first layer first;
        - one array of 5 axes is (layers, batch, heads, queries, keys);
        - one array of 4 axes is one layer, (batch, heads, queries, keys); of 3 axes one layer
          of one item, (heads, queries, keys); of 2 axes one head, (queries, keys);
        - a dict ``{name: map or list of maps}`` names its layers (``name``, or ``name[i]``
          for the maps of a list: a ``get_local.cache``); a Hugging Face output (any mapping
          with ``attentions``, ``encoder_attentions``, ``decoder_attentions`` or
          ``cross_attentions``) declares its stacks: encoder and decoder self-attention and
          the decoder's cross-attention, block by block (``generate(...)``'s per-step tuples
          become the calls of each layer, as a capture of the run keeps them);
        - an ``AttentionMaps`` is returned as it is.

        Each map is a numpy array, a torch tensor (detached: no gradient is kept, and it is
        not copied; half precision is kept and read as float32) or nested lists. Each layer
        reads back as (batch, heads, queries, keys) in the type it came in, with a tokens
        layout and no geometry (plots and views take ``grid=`` and ``prefix_tokens=`` for
        images). Plain maps are declared ``role`` (None, "encoder" or "decoder") and ``kind``
        ("self", "cross", or None: not declared) as given; their paths are ``"layer i"``,
        each its own block. (A Hugging Face output declares its own.)
        """
        from visualizer._arrays import maps_from_arrays

        return maps_from_arrays(attentions, role, kind)

    def _index(self, layer: _Layer) -> None:
        self._by_path[layer.info.path] = layer
        self._by_index[layer.info.index] = layer

    # -- what was captured ----------------------------------------------------------------

    @property
    def diagnosis(self) -> str | None:
        """Why maps are missing, when some are (also said in a CaptureWarning or CaptureError)."""
        return self._diagnosis

    @property
    def model_name(self) -> str:
        return self._model_name

    @property
    def names(self) -> list[str]:
        """Paths of the captured layers, in model order."""
        return [layer.info.path for layer in self._captured()]

    @property
    def infos(self) -> list[LayerInfo]:
        """:class:`LayerInfo` of every captured layer, in model order."""
        return [layer.public() for layer in self._captured()]

    @property
    def selected(self) -> list[LayerInfo]:
        """:class:`LayerInfo` of every selected layer, captured or not (``calls`` may be 0)."""
        return [layer.public() for layer in self._layers]

    def info(self, key: int | str) -> LayerInfo:
        """The :class:`LayerInfo` of one captured layer (a position or a module path)."""
        return self._layer(key).public()

    def layout(self, key: int | str, call: int = -1) -> Layout:
        """The layout of one call of a layer (windows can differ between calls on other image sizes)."""
        layer = self._layer(key)
        self._check_call(layer, call)
        return layer.layouts[call]

    def items(self) -> list[tuple[str, Any]]:
        """``[(path, map), ...]`` in model order."""
        return [(layer.info.path, self._single(layer)) for layer in self._captured()]

    def calls(self, key: int | str) -> list:
        """Every call's map of one layer, in order (rebuilt ones built now)."""
        return [self._value(call) for call in self._layer(key).calls]

    def shape(self, key: int | str, call: int | None = None) -> tuple[int, ...]:
        """The shape of one layer's map (of one call), without building it."""
        value = self._raw(self._layer(key), call)
        return value.shape if isinstance(value, Recipe) else tuple(value.shape)

    def recipe(self, key: int | str, call: int | None = None) -> Recipe | None:
        """What the map of a rebuilt layer is rebuilt from (queries, keys, masks, scale; see
        :class:`~visualizer._lazy.Recipe`), or None where the map was captured eagerly."""
        value = self._raw(self._layer(key), call)
        return value if isinstance(value, Recipe) else None

    def read(
        self,
        layer: int | str,
        *,
        batch: Any = None,
        heads: Any = None,
        rows: Any = None,
        call: int | None = None,
    ):
        """Part of one layer's map: (batch, heads, queries, keys), always those four axes.

        Each selector is None (all), an int, a slice, a list or a 1-D tensor of ints (negative
        from the end): ``batch`` picks items, ``heads`` heads, ``rows`` query rows; ``call``
        picks the call of a layer that ran several times. A rebuilt map is cut to the items,
        heads and rows asked for *before* it is rebuilt, so one item, two heads and ten rows
        of a 16k-token layer cost those rows::

            >>> maps.read(3, batch=0, heads=[1, 2], rows=slice(0, 10)).shape
            (1, 2, 10, 16384)

        A windowed layer follows its declared layout: its first axis is batch x windows, and
        ``batch`` picks items, each with all of its windows (:meth:`scatter` puts them on the
        token grid). A read from a map in the cache (:attr:`cache_bytes`) slices it; ``read``
        never adds to the cache (code that walks the layers once, as rollout does, leaves it
        as it was), while ``maps[i]``, :meth:`calls` and :meth:`stack` keep what they build.
        """
        entry = self._layer(layer)
        kept = self._raw(entry, call)
        layout = entry.layouts[0 if call is None else call]
        items = None
        if batch is not None:
            per = layout.windows if isinstance(layout, Windows) else 1
            items = positions(batch, kept.shape[0] // per, "batch item")
            if isinstance(items, slice):
                items = list(range(kept.shape[0] // per))[items]
            items = [item * per + window for item in items for window in range(per)]
        if not isinstance(kept, Recipe):
            return _select(kept, items, heads, rows)
        built = self._cached(kept, build=False)
        if built is not None:
            return _select(built, items, heads, rows)
        recipe = kept if items is None else kept.items(items)
        return recipe.full(heads) if rows is None else recipe.rows(rows, heads)

    @property
    def cache_bytes(self) -> int:
        """The most bytes of whole rebuilt maps these maps keep, so that ``maps[i]`` twice
        rebuilds layer i once (default :data:`CACHE_BYTES`, 256 MiB). Set it to 0 to keep none;
        the least recently read maps go first. A map larger than the bound is never kept."""
        return self._cache.limit

    @cache_bytes.setter
    def cache_bytes(self, value: int) -> None:
        from visualizer._validate import non_negative_int

        self._cache.resize(non_negative_int(value, "AttentionMaps.cache_bytes"))

    def rows(self, key: int | str, queries: Any, heads: Any = None, call: int | None = None):
        """Query rows of one layer's map, (batch, heads, len(queries), keys): ``read(key,
        rows=queries, heads=heads, call=call)``, kept for the code that calls it so.

        queries: an int, a slice, a list or a 1-D tensor of query positions; heads: the same
        forms, or None for all heads; call: which call, for a layer that ran several times.
        """
        return self.read(key, rows=queries, heads=heads, call=call)

    def row_blocks(self, key: int | str, size: int = BLOCK_ROWS, heads: Any = None, call: int | None = None):
        """``(first row, rows)`` for consecutive blocks of ``size`` query rows of one layer's map,
        each (batch, heads, rows, keys): a rebuilt map is never held whole."""
        from visualizer._validate import positive_int

        size = positive_int(size, "row_blocks(size=...)")
        queries = self.shape(key, call)[2]
        for start in range(0, queries, size):
            yield start, self.rows(key, slice(start, min(start + size, queries)), heads, call)

    def generation(self, key: int | str, rows: Any = None, heads: Any = None, run: int | None = None):
        """One layer's attention over a whole ``model.generate(...)`` run with a KV cache, as
        one causal map: (batch, heads, total, total), total being the tokens whose queries were
        computed (the prompt, then each generated token fed back).

        Each call of the layer (the prefill, then one per step) fills its own query rows, in
        order, and the key columns it saw; columns beyond a step's keys are zero. Row for row,
        this is what ``generate(..., output_attentions=True)`` returns per step (padding rows
        that see no key are zero here). rows: only these query rows of the run (an int, a
        slice, a list or a 1-D tensor), building only the calls they fall in; heads: these
        heads; run: which run where the capture holds several (each starts with a call that
        has no past keys). ValueError where the calls are not one run with a growing cache.
        """
        from visualizer._generation import generation

        layer = self._layer(key)
        return generation(
            layer.calls, rows, heads, run, path=layer.info.path, kind=layer.info.kind, dropped=layer.dropped
        )

    def kept_bytes(self) -> int:
        """Bytes of every tensor the maps keep (maps, or queries, keys and masks), each storage once."""
        seen: dict[tuple, int] = {}
        for layer in self._layers:
            for value in layer.calls:
                for tensor in value.tensors() if isinstance(value, Recipe) else [value]:
                    if not hasattr(tensor, "untyped_storage"):  # a numpy array (from_arrays)
                        base = tensor if tensor.base is None else tensor.base
                        seen[(id(base), "numpy")] = base.nbytes
                        continue
                    storage = tensor.untyped_storage()
                    seen[(storage.data_ptr(), tensor.device)] = storage.nbytes()
        return sum(seen.values())

    def at(self, index: int, call: int | None = None):
        """The map of the attention module at model-order ``index`` among all attention modules
        of the model (negative counts from the last), whichever layers were selected."""
        if isinstance(index, bool) or not isinstance(index, int):
            raise TypeError(f"AttentionMaps.at() takes a model-order index (int), not {type(index).__name__}")
        position = index + self._count if index < 0 else index
        layer = self._by_index.get(position)
        if layer is None:
            if not 0 <= position < self._count:
                raise IndexError(
                    f"attention module {index} is out of range: {self._model_name} has {self._count} "
                    f"attention modules (0..{self._count - 1})"
                )
            raise KeyError(self._unknown(f"attention module {index}"))
        if not layer.calls:
            raise KeyError(self._nothing_from(layer))
        return self._single(layer) if call is None else self._call(layer, call)

    def __len__(self) -> int:
        return len(self._captured())

    def __iter__(self) -> Iterator:
        for layer in self._captured():
            yield self._single(layer)

    def __reversed__(self) -> Iterator:
        for layer in reversed(self._captured()):
            yield self._single(layer)

    def __contains__(self, key: object) -> bool:
        """Whether ``key`` (a module path or position) names a captured layer."""
        if isinstance(key, str):
            layer = self._by_path.get(key)
            return layer is not None and bool(layer.calls)
        if isinstance(key, int) and not isinstance(key, bool):
            return -len(self) <= key < len(self)
        return False

    def index(self, value: Any, start: int = 0, stop: int | None = None) -> int:
        """The position of a map (compared by identity: maps are tensors) or of a module path."""
        captured = self._captured()
        stop = len(captured) if stop is None else stop
        for position in range(start, min(stop, len(captured))):
            layer = captured[position]
            if value is layer.info.path or (isinstance(value, str) and value == layer.info.path):
                return position
            if any(value is call or value is self._cached(call, build=False) for call in layer.calls):
                return position
        raise ValueError(f"{type(value).__name__} is not a captured map nor a captured layer's path")

    def count(self, value: Any) -> int:
        try:
            self.index(value)
        except ValueError:
            return 0
        return 1

    def __getitem__(self, key):
        if isinstance(key, slice):
            return [self._single(layer) for layer in self._captured()[key]]
        if isinstance(key, tuple):
            if len(key) != 2:
                raise KeyError(f"AttentionMaps takes [layer] or [layer, call], not {key!r}")
            layer_key, call = key
            return self._call(self._layer(layer_key), call)
        return self._single(self._layer(key))

    # -- shapes for analysis ---------------------------------------------------------------

    def stack(self, call: int | None = None):
        """All captured layers as one tensor: (layers, batch, heads, queries, keys).

        ``call`` picks which call of each layer, when layers ran more than once.
        """
        maps = self._maps(call)
        shapes = {tuple(m.shape) for m in maps}
        layouts = {type(layer.layouts[-1 if call is None else call]).__name__ for layer in self._captured()}
        if len(shapes) > 1 or len(layouts) > 1:
            listed = ", ".join(f"{name} {tuple(m.shape)}" for name, m in zip(self.names, maps, strict=True))
            raise ValueError(
                f"cannot stack maps of different shapes or layouts: {listed}. Select layers of one shape "
                "with capture_attention(model, layers=...), or stack a subset yourself."
            )
        if not hasattr(maps[0], "detach"):  # numpy arrays (from_arrays)
            import numpy

            return numpy.stack(maps)
        import torch

        return torch.stack(maps)

    def structured(self, call: int | None = None) -> dict:
        """Maps grouped as the model is built, by the role and block its framework declares.

        ``{'encoder': [{'self_attention': map}, ...], 'decoder': [{'self_attention': map,
        'cross_attention': map}, ...]}`` for an encoder-decoder model, one dict per block in
        model order; a model with one stack has ``{'layers': [{'self_attention': map}, ...]}``
        (``'encoder'`` or ``'decoder'`` instead where the framework says which, as
        ``nn.TransformerEncoder`` does). A block with two attentions of one kind keeps both,
        the second as ``'self_attention:<path>'``.
        """
        maps = self._maps(call)
        result: dict[str, list[dict]] = {}
        blocks: dict[tuple, dict] = {}
        for layer, attention in zip(self._captured(), maps, strict=True):
            role = layer.info.role or "layers"
            group = blocks.get((role, layer.info.block))
            if group is None:
                group = blocks[(role, layer.info.block)] = {}
                result.setdefault(role, []).append(group)
            label = f"{layer.info.kind or 'self'}_attention"
            if label in group:
                label = f"{label}:{layer.info.path}"
            group[label] = attention
        return result

    def scatter(self, key: int | str, call: int | None = None):
        """One layer's map on the token grid: (batch, heads, tokens, tokens).

        A tokens layout comes back as it is. A windows layout is scattered: each window's
        attention goes to the rows and columns of its tokens, the cyclic shift undone and
        the padding dropped, with zeros between tokens of different windows (they never
        attend to each other). Channels have no token map: LayoutError.
        """
        layer = self._layer(key)
        weights = self._single(layer) if call is None else self._call(layer, call)
        layout = layer.layouts[-1 if call is None else call]
        if isinstance(layout, Tokens):
            return weights
        if not isinstance(layout, Windows):
            require_tokens(layout, f"maps.scatter({layer.info.path!r})")
        return _scatter_windows(weights, layout, layer.info.path)

    def clear(self) -> None:
        """Forget every captured call (between batches in a long loop, say)."""
        self._cache.clear()
        for layer in self._layers:
            layer.calls.clear()
            layer.layouts.clear()
            layer.runs = layer.dropped = 0
            layer.misses.clear()
            layer.keys = None

    def __repr__(self) -> str:
        captured = self._captured()
        if not captured:
            why = f" {self._diagnosis}" if self._diagnosis else ""
            return f"<AttentionMaps of {self._model_name}: nothing captured.{why}>"
        lines = [f"<AttentionMaps of {self._model_name or 'plain maps'}: {len(captured)} layers"]
        for position, layer in enumerate(captured):
            info = layer.info
            last = layer.calls[-1]
            shape = last.shape if isinstance(last, Recipe) else tuple(last.shape)
            calls = f" x {len(layer.calls)} calls" if len(layer.calls) > 1 else ""
            how = ", rebuilt" if isinstance(last, Recipe) else ""
            name = info.path or "'' (the model itself)"
            role = f"{info.role} " if info.role else ""
            layout = "" if isinstance(layer.layouts[-1], Tokens) else f", {layer.layouts[-1].name}"
            kind = f"{info.kind}-attention" if info.kind else "attention"
            lines.append(f"  [{position}] {name}: {role}{kind} {shape}{layout}{how}{calls}")
        return "\n".join(lines) + ">"

    # -- internals ---------------------------------------------------------------------------

    def _captured(self) -> list[_Layer]:
        return [layer for layer in self._layers if layer.calls]

    def _layer(self, key) -> _Layer:
        if isinstance(key, bool) or not isinstance(key, (int, str)):
            raise TypeError(f"look maps up by position (int) or module path (str), not {type(key).__name__}")
        if isinstance(key, str):
            layer = self._by_path.get(key)
            if layer is None:
                raise KeyError(self._unknown(repr(key)))
            if not layer.calls:
                raise KeyError(self._nothing_from(layer))
            return layer
        captured = self._captured()
        if not -len(captured) <= key < len(captured):
            if not captured:
                raise IndexError(f"no layer was captured, so there is no layer {key}. {self!r}")
            if not self._model_name:  # plain maps (from_arrays)
                raise IndexError(
                    f"layer {key} is out of range: the maps hold {len(captured)} (0..{len(captured) - 1})"
                )
            raise IndexError(
                f"layer {key} is out of range: {len(captured)} layers were captured "
                f"(0..{len(captured) - 1}); "
                "maps.at(n) looks a layer up by its index among all attention modules of the model"
            )
        return captured[key]

    def _check_call(self, layer: _Layer, call: Any) -> None:
        if isinstance(call, bool) or not isinstance(call, int):
            raise TypeError(f"the call number must be an int, not {type(call).__name__}")
        if not -len(layer.calls) <= call < len(layer.calls):
            raise IndexError(
                f"{layer.info.path!r} has {len(layer.calls)} call(s) captured; call {call} is out of range"
            )

    def _call(self, layer: _Layer, call: Any):
        self._check_call(layer, call)
        return self._value(layer.calls[call])

    def _raw(self, layer: _Layer, call: int | None):
        """The kept value of one call (a map or a Recipe); None asks for the only call."""
        if call is None:
            self._single(layer, build=False)
            return layer.calls[0]
        self._check_call(layer, call)
        return layer.calls[call]

    def _unknown(self, what: str) -> str:
        names = [f"[{layer.info.index}] {layer.info.path}" for layer in self._layers]
        shown = ", ".join(names[:16]) + (f", ... ({len(names)} in all)" if len(names) > 16 else "")
        return f"{what} was not captured; selected layers: {shown or '(none)'}"

    def _nothing_from(self, layer: _Layer) -> str:
        path = layer.info.path
        if layer.misses:
            return f"{path!r} ran {layer.runs} time(s) without producing attention weights: {layer.misses[0]}"
        if layer.runs:
            return f"{path!r} ran {layer.runs} time(s) but recorded no map"
        why = (
            f" {self._diagnosis}"
            if self._diagnosis
            else " Call the model inside the capture_attention block."
        )
        return f"{path!r} did not run while capture was on.{why}"

    def _single(self, layer: _Layer, build: bool = True):
        if len(layer.calls) > 1:
            path = layer.info.path
            raise ValueError(
                f"{path!r} ran {len(layer.calls)} times during capture; say which call you mean: "
                f"maps[{path!r}, -1] for the last, maps.calls({path!r}) for all of them, "
                "or maps.stack(call=i) / maps.structured(call=i) for call i of every layer."
            )
        return self._value(layer.calls[0]) if build else layer.calls[0]

    def _value(self, kept):
        """A kept call as its map: a Recipe is rebuilt now, or read from the cache."""
        if not isinstance(kept, Recipe):
            return kept
        return self._cached(kept, build=True)

    def _cached(self, recipe, build: bool):
        """The whole map of ``recipe`` from the cache; where it is not there, None, or (``build``)
        the map rebuilt now and offered to the cache."""
        if not isinstance(recipe, Recipe):
            return None
        weights = self._cache.get(recipe)
        if weights is None and build:
            weights = recipe.full()
            self._cache.put(recipe, weights)
        return weights

    def _maps(self, call: int | None) -> list:
        captured = self._captured()
        if not captured:
            raise LookupError(self.__repr__())
        if call is None:
            return [self._single(layer) for layer in captured]
        return [self._call(layer, call) for layer in captured]


def _select(weights, items, heads, rows):
    """``weights`` (a 4-D map: a tensor or a numpy array) cut to batch ``items`` (positions or
    None), ``heads`` and ``rows`` (None or the forms :func:`~visualizer._validate.positions`
    takes); the map itself when nothing is cut."""
    for axis, chosen, what in ((0, items, "batch item"), (1, heads, "head"), (2, rows, "query row")):
        if chosen is not None:
            weights = weights[(slice(None),) * axis + (positions(chosen, weights.shape[axis], what),)]
    return weights


class _MapCache:
    """Whole maps rebuilt from recipes, least recently read first out, at most ``limit`` bytes."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._kept: OrderedDict[Recipe, Any] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, recipe: Recipe):
        with self._lock:
            weights = self._kept.get(recipe)
            if weights is not None:
                self._kept.move_to_end(recipe)
            return weights

    def put(self, recipe: Recipe, weights) -> None:
        size = weights.numel() * weights.element_size()
        with self._lock:
            if size > self.limit or recipe in self._kept:
                return
            self._kept[recipe] = weights
            self._bytes += size
            self._shrink(self.limit)

    def resize(self, limit: int) -> None:
        with self._lock:
            self.limit = limit
            self._shrink(limit)

    def clear(self) -> None:
        with self._lock:
            self._kept.clear()
            self._bytes = 0

    def _shrink(self, limit: int) -> None:
        while self._bytes > limit and self._kept:
            _, weights = self._kept.popitem(last=False)
            self._bytes -= weights.numel() * weights.element_size()


def _scatter_windows(weights, layout: Windows, path: str):
    """(batch x windows, heads, n, n) -> (batch, heads, tokens, tokens), per ``layout``."""
    import torch

    per_image = layout.windows
    n = layout.window[0] * layout.window[1]
    if weights.dim() != 4 or weights.shape[0] % per_image or weights.shape[-1] != n or weights.shape[-2] != n:
        raise ValueError(
            f"{path!r}: a map of shape {tuple(weights.shape)} does not match its layout {layout.describe()}"
        )
    batch, heads = weights.shape[0] // per_image, weights.shape[1]
    rows, cols = layout.size
    tokens = rows * cols
    positions = torch.tensor(window_positions(layout), device=weights.device)  # (windows, n)
    out = weights.new_zeros((batch, heads, tokens + 1, tokens + 1))  # the extra row/column takes padding
    slot = torch.where(positions < 0, tokens, positions)
    per = weights.reshape(batch, per_image, heads, n, n)
    for w in range(per_image):
        index = slot[w]
        out[:, :, index[:, None], index[None, :]] = per[:, w]
    return out[:, :, :tokens, :tokens]
