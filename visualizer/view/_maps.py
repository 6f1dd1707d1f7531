"""Attention maps in, one (layers, heads, queries, keys) float32 array out.

>>> stack = stack_attentions(cache["Attention.forward"], layers=[0, -1])
>>> stack.maps.shape                         # (layers, heads, queries, keys)
(2, 6, 257, 257)
>>> stack.layer_labels
['layer 0', 'layer 11']

What is accepted (see :func:`visualizer._arrays.split_layers`), and why a bare 3-d array is not:

- a sequence of per-layer maps, each (heads, queries, keys) or (batch, heads, queries, keys),
  numpy arrays or torch tensors: ``get_local.cache[key]``, a list, or an ``AttentionMaps``
  whose ``.names`` (module paths) become the layer labels;
- one stacked array, (layers, heads, queries, keys) or (layers, batch, heads, queries, keys).

A bare (heads, T, T) array could just as well be (layers, T, T) with the heads fused, so it
is refused with the fix (wrap it in a list) rather than guessed. Only the selected layers
are converted to numpy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from visualizer._arrays import layer_map, split_layers

__all__ = ["LayerStack", "pick_indices", "stack_attentions"]


@dataclass(frozen=True)
class LayerStack:
    """The maps a view shows, with the labels of what was kept."""

    maps: object  # numpy float32, (layers, heads, queries, keys)
    layer_labels: list[str]
    head_labels: list[str]


def pick_indices(selection, size: int, argument: str, what: str) -> list[int]:
    """Indices into ``range(size)`` from None (all), an int or ints; negative ones count from the end."""
    if selection is None:
        return list(range(size))
    items = [selection] if isinstance(selection, int) else selection
    if isinstance(items, (str, bytes)) or not isinstance(items, (Sequence, range)):
        raise TypeError(
            f"{argument} must be None, an int or a sequence of ints; got {type(selection).__name__}"
        )
    picked = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, int) and not hasattr(item, "__index__"):
            raise TypeError(f"{argument} must hold ints; got {item!r} ({type(item).__name__})")
        index = int(item.__index__())
        if not -size <= index < size:
            raise ValueError(
                f"{argument}: {what} {index} is out of range; there are {size} {what}s "
                f"(valid: 0 to {size - 1}, or -{size} to -1)"
            )
        picked.append(index % size)
    if not picked:
        raise ValueError(f"{argument} is empty: select at least one {what}")
    if len(set(picked)) != len(picked):
        raise ValueError(f"{argument} repeats a {what}: {list(items)}")
    return picked


def stack_attentions(attentions, *, batch: int = 0, layers=None, heads=None) -> LayerStack:
    """Validate ``attentions`` and return the selected layers and heads of one batch item.

    Raises TypeError for what is not attention maps, and ValueError for inconsistent shapes,
    an out-of-range batch, layer or head, or values that are not attention weights
    (negative, NaN or infinite: pass softmax probabilities, not scores).
    """
    if isinstance(batch, bool) or not isinstance(batch, int):
        raise TypeError(f"batch must be an int; got {type(batch).__name__}")
    names = _layer_names(attentions)
    per_layer = split_layers(attentions, "attentions")
    layer_index = pick_indices(layers, len(per_layer), "layers", "layer")
    arrays = []
    for position in layer_index:
        array = layer_map(per_layer[position], f"attentions[{position}]")
        if array.ndim == 4:
            if not -array.shape[0] <= batch < array.shape[0]:
                raise ValueError(
                    f"batch={batch} is out of range: attentions[{position}] has batch size "
                    f"{array.shape[0]} (shape {tuple(array.shape)})"
                )
            array = array[batch]
        arrays.append(array)
    shapes = {array.shape for array in arrays}
    if len(shapes) > 1:
        raise ValueError(f"all layers must have the same (heads, queries, keys) shape; got {sorted(shapes)}")
    head_index = pick_indices(heads, arrays[0].shape[0], "heads", "head")
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
    labels = [names[i] if names else f"layer {i}" for i in layer_index]
    return LayerStack(maps, labels, [str(h) for h in head_index])


def _layer_names(attentions) -> list[str] | None:
    """Module paths from an ``AttentionMaps``-like ``.names``, when there is one name per layer."""
    if hasattr(attentions, "shape"):
        return None  # a torch tensor's .names are its dimension names, not layers
    names = getattr(attentions, "names", None)
    if names is None or isinstance(names, str):
        return None
    try:
        names = [str(name) for name in names]
        count = len(attentions)
    except TypeError:
        return None
    return names if len(names) == count else None
