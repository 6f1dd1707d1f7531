"""The kept layers and heads of one batch item, as one (layers, heads, queries, keys) float32 array.

>>> stack = stack_layers(as_maps(cache["Attention.forward"], "attentions").maps, layers=[0, -1])
>>> stack.maps.shape                         # (layers, heads, queries, keys)
(2, 6, 257, 257)
>>> stack.layer_labels                       # the declared paths; plain maps: "layer i"
['layer 0', 'layer 11']

Every view turns what it is given into an ``AttentionMaps`` at its entry
(:func:`visualizer._arrays.as_maps`); its declared layer paths label the layers, and every
selected layer must be declared with a tokens layout: windowed (Swin) and channel (XCiT)
layers are refused with a LayoutError naming the fix. Only the kept item, layers and heads
are read. Selections follow :mod:`visualizer._validate`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from visualizer._arrays import pick_layers, read_item
from visualizer._maps import AttentionMaps
from visualizer._validate import index, indices

__all__ = ["LayerStack", "check_weights", "initial_head", "initial_layer", "stack_layers"]


@dataclass(frozen=True)
class LayerStack:
    """The maps a view shows, with the labels of what was kept."""

    maps: object  # numpy float32, (layers, heads, queries, keys)
    layer_labels: list[str]
    head_labels: list[str]
    layer_index: tuple[int, ...] = ()  # the kept layers, as indices into all of them
    head_index: tuple[int, ...] = ()
    layer_count: int = 0  # how many layers and heads there were before the selection
    head_count: int = 0


def initial_layer(stack: LayerStack, layer, what: str) -> int:
    """The position, among the kept layers, of the layer a view opens on.

    ``layer`` is an index into all the layers (the numbering of ``layers=``) and must be one
    of those kept; None picks the kept layer two thirds of the way down,
    ``(2 * kept) // 3``: a middle-to-late layer, where a ViT's attention is most telling
    (DINOv2's last layer is dominated by its artefact tokens, its first ones are local).
    """
    if layer is None:
        return (2 * len(stack.layer_index)) // 3 if len(stack.layer_index) > 1 else 0
    chosen = index(layer, stack.layer_count, f"{what}: layer", "layer")
    if chosen not in stack.layer_index:
        raise ValueError(
            f"{what}: layer {layer} is not among the kept layers {list(stack.layer_index)}; add it to "
            "layers= or drop layer="
        )
    return stack.layer_index.index(chosen)


def initial_head(stack: LayerStack, head, modes: tuple[str, ...], what: str):
    """The head a view opens on: a position among the kept heads, or one of ``modes`` ("mean", "all").

    None: the first kept head.
    """
    if head is None:
        return 0
    if isinstance(head, str):
        if head not in modes:
            raise ValueError(f"{what}: head must be a head index or one of {modes}, not {head!r}")
        return head
    chosen = index(head, stack.head_count, f"{what}: head", "head")
    if chosen not in stack.head_index:
        raise ValueError(
            f"{what}: head {head} is not among the kept heads {list(stack.head_index)}; add it to "
            "heads= or drop head="
        )
    return stack.head_index.index(chosen)


def stack_layers(maps: AttentionMaps, *, batch: int = 0, layers=None, heads=None) -> LayerStack:
    """The selected layers and heads of item ``batch`` of ``maps``, checked to be attention weights.

    Raises TypeError for a batch that is not an int, IndexError for an out-of-range batch,
    layer or head, LayoutError for a selected layer declared with windows or channels, and
    ValueError for inconsistent shapes or values that are not attention weights (negative,
    NaN or infinite: pass softmax probabilities, not scores).
    """
    if isinstance(batch, bool) or not isinstance(batch, int):
        raise TypeError(f"batch must be an int; got {type(batch).__name__}")
    layer_index = pick_layers(maps, layers, "attentions", batch)
    counts = {maps.shape(i)[1] for i in layer_index}
    if len(counts) > 1:
        raise ValueError(f"all layers must have the same number of heads; got {sorted(counts)}")
    head_count = counts.pop()
    head_index = indices(heads, head_count, "heads", "head")
    arrays = [read_item(maps, i, batch, f"attentions[{i}]", heads=head_index) for i in layer_index]
    stacked = check_weights(np.stack(arrays).astype(np.float32), "attentions")
    return LayerStack(
        stacked,
        [maps.info(i).path for i in layer_index],
        [str(h) for h in head_index],
        tuple(layer_index),
        tuple(head_index),
        len(maps),
        head_count,
    )


def check_weights(array: np.ndarray, what: str) -> np.ndarray:
    """``array``, refused unless it holds attention weights (finite, >= 0)."""
    if not np.isfinite(array).all():
        raise ValueError(f"{what} holds NaN or infinite values; pass finite attention weights")
    if array.size and array.min() < 0:
        raise ValueError(
            f"{what} holds negative values (min {float(array.min()):.4g}): attention weights are >= 0. "
            "Pass the softmax probabilities, not the scores before the softmax."
        )
    return array
