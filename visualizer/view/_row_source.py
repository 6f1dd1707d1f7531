"""The kept layers and heads of one batch item of an ``AttentionMaps``, read a block of query rows
at a time (for the text view).

>>> source = row_reader(maps, batch=0, layers=None, heads=None, what="text_view()")
>>> source.shape                                   # (layers, heads, queries, keys) kept
(4, 8, 4096, 4096)
>>> for layer, start, block in source.blocks():    # block: (heads, rows, keys) float32
...     ...

A layer that ran once is read with ``maps.rows``; one that ran once per step of
``model.generate`` with ``maps.generation(i, rows=...)``, the stitched causal map of the run.
A rebuilt layer is never built whole: at most ``heads x ROWS x keys`` weights are held at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from visualizer._arrays import as_array
from visualizer._blockwise import ROWS
from visualizer._maps import AttentionMaps
from visualizer._structure import require_tokens
from visualizer._validate import index, indices
from visualizer.view._maps import LayerStack

__all__ = ["RowSource", "row_reader"]


class RowSource(NamedTuple):
    """The kept layers and heads of one batch item (``stack``, its maps None), readable a block of
    rows at a time: ``read(layer position among all, start, stop)`` gives (heads, rows, keys) float32."""

    stack: LayerStack
    shape: tuple[int, int, int, int]  # (kept layers, kept heads, queries, keys)
    read: Callable

    def blocks(self):
        """``(kept layer position, first row, (heads, rows, keys) float32)`` for every block of rows."""
        queries = self.shape[2]
        for position, layer in enumerate(self.stack.layer_index):
            for start in range(0, queries, ROWS):
                yield position, start, self.read(layer, start, min(start + ROWS, queries))


def row_reader(maps: AttentionMaps, *, batch: int, layers, heads, what: str) -> RowSource:
    """The :class:`RowSource` of the kept ``layers`` and ``heads`` of item ``batch`` of ``maps``."""
    if isinstance(batch, bool) or not isinstance(batch, int):
        raise TypeError(f"{what}: batch must be an int; got {type(batch).__name__}")
    infos = maps.infos
    layer_index = indices(layers, len(maps), f"{what}: layers", "layer")
    for i in layer_index:
        require_tokens(infos[i].layout, f"{what}: attentions: layer {i} ({infos[i].path!r})")
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
            block = maps.generation(layer, rows=rows, heads=selected)[item]
        else:  # only this item's rows (a rebuilt map: rebuilt for it alone)
            block = maps.read(layer, batch=[item], rows=rows, heads=selected)[0]
        return np.asarray(as_array(block, f"{what}: attentions[{layer}]"), dtype=np.float32)

    labels = [infos[i].path for i in layer_index]
    stack = LayerStack(
        None, labels, [str(h) for h in head_index], tuple(layer_index), tuple(head_index), len(maps), shape[0]
    )
    return RowSource(stack, (len(layer_index), len(head_index), *shape[1:]), read)


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
