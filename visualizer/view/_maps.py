"""Attention maps in, one (layers, heads, queries, keys) float32 array out.

>>> stack = stack_attentions(cache["Attention.forward"], layers=[0, -1])
>>> stack.maps.shape                         # (layers, heads, queries, keys)
(2, 6, 257, 257)
>>> stack.layer_labels
['layer 0', 'layer 11']

What is accepted (see :func:`visualizer._arrays.split_layers`), and why a bare 3-d array is not:

- an ``AttentionMaps``: its declared layer paths (``maps.infos``) become the layer labels,
  and every selected layer must be declared with a tokens layout: windowed (Swin) and
  channel (XCiT) layers are refused with a LayoutError naming the fix;
- a sequence of per-layer maps, each (heads, queries, keys) or (batch, heads, queries, keys),
  numpy arrays or torch tensors: ``get_local.cache[key]`` or a list, labelled by position;
- one stacked array, (layers, heads, queries, keys) or (layers, batch, heads, queries, keys).

A bare (heads, T, T) array could just as well be (layers, T, T) with the heads fused, so it
is refused with the fix (wrap it in a list) rather than guessed. Only the selected layers
are converted to numpy. Selections follow :mod:`visualizer._validate`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from visualizer._arrays import layer_infos, layer_map, require_token_layers, split_layers
from visualizer._validate import index, indices

__all__ = ["LayerStack", "initial_head", "initial_layer", "stack_attentions"]


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


def stack_attentions(attentions, *, batch: int = 0, layers=None, heads=None) -> LayerStack:
    """Validate ``attentions`` and return the selected layers and heads of one batch item.

    Raises TypeError for what is not attention maps, IndexError for an out-of-range batch,
    layer or head, LayoutError for a selected layer declared with windows or channels, and
    ValueError for inconsistent shapes or values that are not attention weights (negative,
    NaN or infinite: pass softmax probabilities, not scores).
    """
    if isinstance(batch, bool) or not isinstance(batch, int):
        raise TypeError(f"batch must be an int; got {type(batch).__name__}")
    infos = layer_infos(attentions)
    per_layer = split_layers(attentions, "attentions")
    layer_index = indices(layers, len(per_layer), "layers", "layer")
    require_token_layers(infos, layer_index, "attentions")
    arrays = []
    for position in layer_index:
        array = layer_map(per_layer[position], f"attentions[{position}]")
        if array.ndim == 4:
            array = array[
                index(batch, array.shape[0], f"batch (attentions[{position}] {array.shape})", "batch item")
            ]
            if infos is not None:  # a layer built for this: keep its item, not the whole batch
                array = array.copy()
        arrays.append(array)
    shapes = {array.shape for array in arrays}
    if len(shapes) > 1:
        raise ValueError(f"all layers must have the same (heads, queries, keys) shape; got {sorted(shapes)}")
    head_index = indices(heads, arrays[0].shape[0], "heads", "head")
    maps = np.stack([array[head_index] for array in arrays]).astype(np.float32)
    if 0 in maps.shape:
        raise ValueError(f"attentions has an empty dimension: (heads, queries, keys) = {arrays[0].shape}")
    if not np.isfinite(maps).all():
        raise ValueError("attentions holds NaN or infinite values; pass finite attention weights")
    low = float(maps.min())
    if low < 0:
        raise ValueError(
            f"attentions holds negative values (min {low:.4g}): attention weights are >= 0. "
            "Pass the softmax probabilities, not the scores before the softmax."
        )
    labels = [infos[i].path if infos is not None else f"layer {i}" for i in layer_index]
    return LayerStack(
        maps,
        labels,
        [str(h) for h in head_index],
        tuple(layer_index),
        tuple(head_index),
        len(per_layer),
        arrays[0].shape[0],
    )
