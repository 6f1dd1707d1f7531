"""Attention maps read one block of query rows at a time, whatever form they come in (for the text view).

>>> source = row_source(maps, batch=0, layers=None, heads=None, what="text_view()")
>>> source.shape                                   # (layers, heads, queries, keys) kept
(4, 8, 4096, 4096)
>>> for layer, start, block in source.blocks():    # block: (heads, rows, keys) float32
...     ...

Accepted: an ``AttentionMaps`` (a layer that ran once is read with ``maps.row_blocks``; one
that ran once per step of ``model.generate`` is read with ``maps.generation(i, rows=...)``,
the stitched causal map of the run), a sequence of per-layer maps, (heads, queries, keys) or
(batch, heads, queries, keys), numpy or torch (``[maps.generation(i) for i in ...]`` too), or
one stacked (layers, [batch,] heads, queries, keys) array. A rebuilt layer is never built
whole: at most ``heads x ROWS x keys`` weights are held at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from visualizer._arrays import as_array, layer_infos, layer_map, require_token_layers, split_layers
from visualizer._blockwise import ROWS
from visualizer._maps import AttentionMaps
from visualizer._validate import index, indices

__all__ = ["RowSource", "row_source"]


@dataclass(frozen=True)
class RowSource:
    """The selected layers and heads of one batch item, readable a block of rows at a time."""

    read: object  # (layer position among all, start, stop) -> (heads, rows, keys) float32
    shape: tuple[int, int, int, int]
    layer_index: tuple[int, ...]
    head_index: tuple[int, ...]
    layer_labels: list[str]
    layer_count: int
    head_count: int

    def blocks(self):
        """``(kept layer position, first row, (heads, rows, keys) float32)`` for every block of rows."""
        queries = self.shape[2]
        for position, layer in enumerate(self.layer_index):
            for start in range(0, queries, ROWS):
                yield position, start, self.read(layer, start, min(start + ROWS, queries))


def row_source(attentions, *, batch: int, layers, heads, what: str) -> RowSource:
    """Check ``attentions`` (see the module docstring) and return a :class:`RowSource` of it."""
    if isinstance(batch, bool) or not isinstance(batch, int):
        raise TypeError(f"{what}: batch must be an int; got {type(batch).__name__}")
    if isinstance(attentions, AttentionMaps) and len(attentions):
        return _from_maps(attentions, batch, layers, heads, what)
    per_layer = split_layers(attentions, f"{what}: attentions")
    layer_index = indices(layers, len(per_layer), f"{what}: layers", "layer")
    arrays = {}
    for position in layer_index:
        array = layer_map(per_layer[position], f"{what}: attentions[{position}]")
        if array.ndim == 4:
            array = array[
                index(
                    batch,
                    array.shape[0],
                    f"{what}: batch (attentions[{position}] {array.shape})",
                    "batch item",
                )
            ]
        arrays[position] = array
    shape = _common_shape({p: a.shape for p, a in arrays.items()}, what)
    head_index = indices(heads, shape[0], f"{what}: heads", "head")

    def read(layer, start, stop):
        return np.asarray(arrays[layer][head_index, start:stop], dtype=np.float32)

    labels = [f"layer {i}" for i in layer_index]
    return RowSource(
        read,
        (len(layer_index), len(head_index), *shape[1:]),
        tuple(layer_index),
        tuple(head_index),
        labels,
        len(per_layer),
        shape[0],
    )


def _from_maps(maps: AttentionMaps, batch: int, layers, heads, what: str) -> RowSource:
    infos = layer_infos(maps)
    layer_index = indices(layers, len(maps), f"{what}: layers", "layer")
    require_token_layers(infos, layer_index, f"{what}: attentions")
    shapes, stitched = {}, {}
    for position in layer_index:
        info = infos[position]
        if info.calls > 1:
            if info.kind == "cross":
                raise ValueError(
                    f"{what}: layer {position} ({info.path!r}) is cross-attention that ran {info.calls} "
                    "times; the text view shows self-attention: pick self-attention layers with layers="
                )
            first = maps.generation(position, rows=0)  # one row: the run's shape, checked
            shapes[position] = (first.shape[0], first.shape[1], first.shape[3], first.shape[3])
            stitched[position] = True
        else:
            shapes[position] = tuple(int(n) for n in maps.shape(position))
            stitched[position] = False
    batches = {shape[0] for shape in shapes.values()}
    size = min(batches)
    item = index(batch, size, f"{what}: batch", "batch item")
    shape = _common_shape({p: s[1:] for p, s in shapes.items()}, what)
    head_index = indices(heads, shape[0], f"{what}: heads", "head")
    selected = None if len(head_index) == shape[0] and head_index == sorted(head_index) else head_index

    def read(layer, start, stop):
        rows = slice(start, stop)
        if stitched[layer]:
            block = maps.generation(layer, rows=rows, heads=selected)
        else:
            block = maps.rows(layer, rows, heads=selected)
        return np.asarray(as_array(block[item], f"{what}: attentions[{layer}]"), dtype=np.float32)

    labels = [infos[i].path for i in layer_index]
    return RowSource(
        read,
        (len(layer_index), len(head_index), *shape[1:]),
        tuple(layer_index),
        tuple(head_index),
        labels,
        len(maps),
        shape[0],
    )


def _common_shape(shapes: dict, what: str) -> tuple[int, int, int]:
    distinct = set(shapes.values())
    if len(distinct) > 1:
        raise ValueError(
            f"{what}: all layers must have the same (heads, queries, keys) shape; got "
            + ", ".join(f"layer {p}: {s}" for p, s in shapes.items())
        )
    shape = next(iter(distinct))
    if 0 in shape:
        raise ValueError(f"{what}: attentions has an empty dimension: (heads, queries, keys) = {shape}")
    return shape
