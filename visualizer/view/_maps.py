"""Attention maps in, one (layers, heads, queries, keys) float32 array out.

>>> stack = stack_attentions(cache["Attention.forward"], layers=[0, -1])
>>> stack.maps.shape                         # (layers, heads, queries, keys)
(2, 6, 257, 257)
>>> stack.layer_labels
['layer 0', 'layer 11']

What is accepted, and why a bare 3-d array is not:

- a sequence of per-layer maps, each (heads, queries, keys) or (batch, heads, queries, keys),
  numpy arrays or torch tensors: ``get_local.cache[key]``, a list, or an ``AttentionMaps``
  whose ``.names`` (module paths) become the layer labels;
- one stacked array, (layers, heads, queries, keys) or (layers, batch, heads, queries, keys).

A bare (heads, T, T) array could just as well be (layers, T, T) with the heads fused, so it
is refused with the fix (wrap it in a list) rather than guessed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["LayerStack", "as_numpy", "pick_indices", "stack_attentions"]


@dataclass(frozen=True)
class LayerStack:
    """The maps a view shows, with the labels of what was kept."""

    maps: object  # numpy float32, (layers, heads, queries, keys)
    layer_labels: list[str]
    head_labels: list[str]


def as_numpy(value, argument: str):
    """A numpy array from a numpy array, a torch tensor (any device, any float dtype) or a nested list."""
    import numpy as np

    if type(value).__module__.split(".")[0] == "torch":
        value = value.detach().to("cpu")
        # bf16 has no numpy dtype, so widen floats before leaving torch; uint8 pictures stay uint8.
        value = (value.float() if value.is_floating_point() else value).numpy()
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as error:
        kind = type(value).__name__
        raise TypeError(f"{argument} must be a numpy array or a torch tensor; got {kind}") from error
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise TypeError(f"{argument} must hold real numbers; got dtype {array.dtype} from "
                        f"{type(value).__name__}")
    return array


def pick_indices(selection, size: int, argument: str, what: str) -> list[int]:
    """Indices into ``range(size)`` from None (all), an int or ints; negative ones count from the end."""
    if selection is None:
        return list(range(size))
    items = [selection] if isinstance(selection, int) else selection
    if isinstance(items, (str, bytes)) or not isinstance(items, (Sequence, range)):
        raise TypeError(f"{argument} must be None, an int or a sequence of ints; "
                        f"got {type(selection).__name__}")
    picked = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, int) and not hasattr(item, "__index__"):
            raise TypeError(f"{argument} must hold ints; got {item!r} ({type(item).__name__})")
        index = int(item.__index__())
        if not -size <= index < size:
            raise ValueError(f"{argument}: {what} {index} is out of range; there are {size} {what}s "
                             f"(valid: 0 to {size - 1}, or -{size} to -1)")
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
    import numpy as np

    if isinstance(batch, bool) or not isinstance(batch, int):
        raise TypeError(f"batch must be an int; got {type(batch).__name__}")
    names = _layer_names(attentions)
    per_layer = _split_layers(attentions)
    layer_index = pick_indices(layers, len(per_layer), "layers", "layer")
    arrays = []
    for position in layer_index:
        array = as_numpy(per_layer[position], f"attentions[{position}]")
        if array.ndim == 4:
            if not -array.shape[0] <= batch < array.shape[0]:
                raise ValueError(f"batch={batch} is out of range: attentions[{position}] has batch size "
                                 f"{array.shape[0]} (shape {tuple(array.shape)})")
            array = array[batch]
        elif array.ndim != 3:
            raise ValueError(f"attentions[{position}] must be (heads, queries, keys) or (batch, heads, "
                             f"queries, keys); got shape {tuple(array.shape)}")
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
        raise ValueError(f"attentions holds negative values (min {low:.4g}): attention weights are >= 0. "
                         "Pass the softmax probabilities, not the scores before the softmax.")
    labels = [names[i] if names else f"layer {i}" for i in layer_index]
    return LayerStack(maps, labels, [str(h) for h in head_index])


def _split_layers(attentions) -> list:
    """One entry per layer, unconverted: a stacked array is split along its first axis."""
    if isinstance(attentions, (str, bytes, dict)):
        raise TypeError(f"attentions must be a sequence of per-layer maps or one stacked array; "
                        f"got {type(attentions).__name__}"
                        + (" (pass one key's list, e.g. get_local.cache['Attention.forward'])"
                           if isinstance(attentions, dict) else ""))
    if hasattr(attentions, "shape") and hasattr(attentions, "ndim"):
        ndim = attentions.ndim
        if ndim == 3:
            raise ValueError(f"a single 3-d array {tuple(attentions.shape)} is ambiguous: for one layer's "
                             "(heads, queries, keys) pass it in a list, [attn]; a stack of layers is "
                             "(layers, heads, queries, keys)")
        if ndim not in (4, 5):
            raise ValueError(f"a stacked attentions array must be (layers, heads, queries, keys) or "
                             f"(layers, batch, heads, queries, keys); got shape {tuple(attentions.shape)}")
        return [attentions[i] for i in range(attentions.shape[0])]
    if not isinstance(attentions, Sequence):
        raise TypeError(f"attentions must be a sequence of per-layer maps or one stacked array; "
                        f"got {type(attentions).__name__}")
    if len(attentions) == 0:
        raise ValueError("attentions is empty: no layer was captured "
                         "(was capture active, and fused attention off?)")
    return list(attentions)


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
