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

__all__ = ["LayerStack", "stack_attentions"]


@dataclass(frozen=True)
class LayerStack:
    """The maps a view shows, with the labels of what was kept."""

    maps: object  # numpy float32, (layers, heads, queries, keys)
    layer_labels: list[str]
    head_labels: list[str]


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
    return LayerStack(maps, labels, [str(h) for h in head_index])
