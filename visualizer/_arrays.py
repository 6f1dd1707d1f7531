"""User-supplied attention maps and images as validated numpy arrays (for analysis, plots and view).

>>> as_array(attn, "entropy(): attn").dtype                 # a bf16 tensor: detached, on the CPU
dtype('float32')
>>> layers, batched = layer_maps(cache["Attention.forward"], "rollout(): attentions")
>>> layers[0].shape, batched                                # one (batch, heads, queries, keys) per layer
((1, 6, 197, 197), True)
>>> as_rgb_uint8(picture, "image").shape                    # uint8 or float in [0, 1], RGB, RGBA or gray
(224, 224, 3)
>>> layer_infos(maps)[0].layout                             # an AttentionMaps declares each layer
Tokens(prefix=1, grid=(14, 14))
>>> image_geometry(197, None, None, maps.layout(0), "plot")   # (rows, cols, prefix): declared here
(14, 14, 1)

An ``AttentionMaps`` is a sequence of per-layer maps like any other, and it also says what
each layer is (:func:`layer_infos`); :func:`require_token_layers` refuses the layers whose
declared layout is not tokens. Plain maps declare nothing, and nothing is guessed for them.

``what`` names the argument in the error messages, e.g. "rollout(): attentions". Torch is
never imported here: a tensor is recognised only when torch is already in ``sys.modules``.
"""

from __future__ import annotations

import math
import numbers
import sys
from collections.abc import Mapping

import numpy as np

from visualizer._maps import AttentionMaps
from visualizer._structure import LayerInfo, Tokens, require_tokens

__all__ = [
    "as_array",
    "as_rgb_uint8",
    "check_layer_shapes",
    "declared_defaults",
    "declared_layout",
    "image_geometry",
    "layer_infos",
    "layer_label",
    "layer_map",
    "layer_maps",
    "patch_grid",
    "prefix_count",
    "require_token_layers",
    "split_layers",
]


def as_array(value, what: str, *, keep_integers: bool = False) -> np.ndarray:
    """A numpy array of real numbers from a numpy array, a torch tensor or nested lists.

    Tensors are detached and moved to the CPU; bf16 (which numpy lacks) and fp16 become
    float32. Integers and bools become float64, ready for arithmetic, unless
    ``keep_integers`` (a uint8 picture stays uint8).
    """
    if isinstance(value, _MapsLayer):
        value = value.build()
    kind = type(value).__name__
    if isinstance(value, AttentionMaps):
        raise TypeError(
            f"{what} is one layer's map, not an AttentionMaps of {len(value)} layers; pick one: maps[i] or "
            "maps['path'] (maps.scatter('path') puts a windowed layer on the token grid)"
        )
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        if value.dtype in (torch.bfloat16, torch.float16):
            value = value.float()
        value = value.numpy()
    if isinstance(value, (str, bytes, Mapping)) or value is None:
        raise TypeError(f"{what} must be a numpy array or a torch tensor, not {kind}")
    try:
        a = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{what} must be a numpy array or a torch tensor, not {kind}: {exc}") from None
    if a.dtype.kind not in "biuf":
        raise TypeError(f"{what} must hold real numbers, not dtype {a.dtype} (from {kind})")
    if a.dtype == np.float16:
        return a.astype(np.float32)
    if a.dtype.kind != "f" and not keep_integers:
        return a.astype(np.float64)
    return a


class _MapsLayer:
    """One layer of an AttentionMaps, built only when converted (:func:`as_array`)."""

    __slots__ = ("maps", "position", "shape")

    def __init__(self, maps: AttentionMaps, position: int) -> None:
        self.maps, self.position = maps, position
        self.shape = tuple(maps.shape(position))  # a layer that ran several times is refused here

    def build(self):
        return self.maps.read(self.position)  # a cached map, or rebuilt for the caller alone


def split_layers(attentions, what: str) -> list:
    """One entry per layer, not yet converted: a stacked array is split along its first axis.

    A bare 3-d array is refused rather than guessed at: one layer's (heads, T, T) looks just
    like (layers, T, T) with the heads fused. The layers of an ``AttentionMaps`` are not
    built here: each entry builds its layer when converted, so converting them one at a
    time never holds two (and a rebuilt layer that is not converted is never built).
    """
    if isinstance(attentions, AttentionMaps) and len(attentions):
        return [_MapsLayer(attentions, i) for i in range(len(attentions))]
    torch = sys.modules.get("torch")
    if isinstance(attentions, np.ndarray) or torch is not None and isinstance(attentions, torch.Tensor):
        shape = tuple(attentions.shape)
        if len(shape) == 3:
            raise ValueError(
                f"{what}: a single 3-d array {shape} is ambiguous: for one layer's (heads, "
                "queries, keys) pass it in a list, [attn]; a stack of layers is (layers, heads, "
                "queries, keys)"
            )
        if len(shape) not in (4, 5):
            raise ValueError(
                f"{what}: a stacked array must be (layers, heads, queries, keys) or "
                f"(layers, batch, heads, queries, keys), not shape {shape}; for one layer's map "
                "pass a list: [attn]"
            )
        return list(attentions)
    if isinstance(attentions, Mapping):
        raise TypeError(
            f"{what} must be a sequence of per-layer maps, not a {type(attentions).__name__}; "
            "pass one key's list, e.g. get_local.cache['Attention.forward'], or "
            "list(maps.values())"
        )
    items = None
    if not isinstance(attentions, (str, bytes)) and attentions is not None:
        try:
            items = list(attentions)
        except TypeError:
            pass
    if items is None:
        raise TypeError(
            f"{what} must be a sequence of per-layer maps or one stacked array, "
            f"not {type(attentions).__name__}"
        )
    if not items:
        raise ValueError(
            f"{what} is empty: pass at least one layer's map (from a capture: was it active, "
            "and fused attention off?)"
        )
    return items


def layer_infos(attentions) -> list[LayerInfo] | None:
    """The declared :class:`LayerInfo` of each captured layer of an ``AttentionMaps``, in order.

    None for plain maps (a list, a dict, a tensor): they declare nothing, and nothing is
    guessed from names or shapes.
    """
    return attentions.infos if isinstance(attentions, AttentionMaps) else None


def require_token_layers(infos: list[LayerInfo] | None, chosen, what: str) -> None:
    """LayoutError unless every chosen layer is declared with a tokens layout (plain maps pass)."""
    if infos is None:
        return
    for i in chosen:
        require_tokens(infos[i].layout, f"{what}: layer {i} ({infos[i].path!r})")


def layer_label(info: LayerInfo | None, position: int) -> str:
    """A short caption: ``"layer 3"``, ``"decoder layer 1, cross"``; plain maps: ``"layer <position>"``."""
    if info is None:
        return f"layer {position}"
    role = f"{info.role} " if info.role else ""
    kind = ", cross" if info.kind == "cross" else ""
    return f"{role}layer {info.depth}{kind}"


def layer_map(value, what: str) -> np.ndarray:
    """One layer's map as a float array, (heads, queries, keys) or (batch, heads, queries, keys)."""
    a = as_array(value, what)
    if a.ndim not in (3, 4):
        raise ValueError(
            f"{what} must be (heads, queries, keys) or (batch, heads, queries, keys), not shape {a.shape}"
        )
    return a


def layer_maps(attentions, what: str, positions=None) -> tuple[list[np.ndarray], bool]:
    """Every layer as a (batch, heads, Q, K) float array, and whether a batch axis came in.

    ``positions``: the layers' indices to name in messages, when ``attentions`` is a selection.
    """
    items = split_layers(attentions, what)
    positions = list(range(len(items))) if positions is None else list(positions)
    layers = [layer_map(item, f"{what}[{i}]") for i, item in zip(positions, items)]
    batched = check_layer_shapes([a.shape for a in layers], positions, what)
    if not batched:
        layers = [a[None] for a in layers]
    return layers, batched


def check_layer_shapes(shapes: list[tuple], positions: list[int], what: str) -> bool:
    """ValueError unless the layers agree in batch size, queries and keys; whether they have a batch axis."""
    if len({len(shape) for shape in shapes}) > 1:
        raise ValueError(f"{what}: some layers have a batch axis and some do not ({shapes})")
    batched = len(shapes[0]) == 4
    shapes = [tuple(shape) if batched else (1, *shape) for shape in shapes]
    first = shapes[0]
    for i, shape in zip(positions, shapes):
        if (shape[0], shape[-2], shape[-1]) != (first[0], first[-2], first[-1]):
            raise ValueError(
                f"{what}: layer {i} has shape {shape} but layer {positions[0]} has {first}; batch size, "
                "queries and keys must agree across layers"
            )
    return batched


def prefix_count(value, what: str) -> int:
    """How many prefix tokens: True is 1, False is 0, an int >= 0 is itself."""
    if isinstance(value, bool):
        return int(value)
    if not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{what} must be True, False or a count >= 0 of prefix tokens, not {value!r}")
    return int(value)


def declared_layout(attentions, layer, call: int | None = None):
    """The layout a capture declared for one call of one layer (the last call when ``call`` is
    None), or None for plain maps, which declare nothing."""
    if not isinstance(attentions, AttentionMaps):
        return None
    return attentions.layout(layer, -1 if call is None else call)


def declared_defaults(grid, prefix_tokens, declared) -> tuple:
    """``(grid, prefix_tokens)``, each as given, else what a capture declared (``declared``, a
    layout from :func:`declared_layout`): its prefix tokens, and its grid where the prefix is the
    declared one. Without a declared grid: ``prefix_tokens`` defaults to 1 and ``grid`` stays
    None (the caller infers it). ``prefix_tokens`` is passed on unchecked."""
    if not (isinstance(declared, Tokens) and declared.grid is not None):
        return grid, 1 if prefix_tokens is None else prefix_tokens
    if prefix_tokens is None:
        prefix_tokens = declared.prefix
    if grid is None and prefix_tokens == declared.prefix:
        grid = declared.grid
    return grid, prefix_tokens


def image_geometry(
    tokens: int, grid, prefix_tokens, declared, what: str, argument: str = "prefix_tokens"
) -> tuple[int, int, int]:
    """(rows, cols, prefix) of the image patches among ``tokens`` keys.

    ``grid`` and ``prefix_tokens`` where given (each overrides the declared value alone);
    else what the capture declared for the layer (:func:`declared_defaults`); else one prefix
    token and a square grid, as for plain maps.
    """
    grid, prefix_tokens = declared_defaults(grid, prefix_tokens, declared)
    prefix = prefix_count(prefix_tokens, f"{what}: {argument}")
    rows, cols = patch_grid(tokens, grid, prefix, what)
    return rows, cols, prefix


def patch_grid(tokens: int, grid, prefix: int, what: str) -> tuple[int, int]:
    """(rows, cols) of the patch grid, checked against the token count; None infers a square."""
    patches = tokens - prefix
    if grid is None:
        side = math.isqrt(max(patches, 0))
        if patches <= 0 or side * side != patches:
            raise ValueError(
                f"{what}: {tokens} tokens minus {prefix} prefix token(s) leave {patches} patches, not a "
                "square number; pass grid=(rows, cols) or the right number of prefix tokens"
            )
        return side, side
    if isinstance(grid, numbers.Integral) and not isinstance(grid, bool):
        grid = (grid, grid)
    try:
        rows, cols = grid
        ok = all(isinstance(n, numbers.Integral) and not isinstance(n, bool) and n > 0 for n in (rows, cols))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"{what}: grid must be (rows, cols) of positive ints, an int, or None, not {grid!r}")
    if rows * cols != patches:
        raise ValueError(
            f"{what}: grid {rows} x {cols} has {rows * cols} patches but the maps have {tokens} tokens "
            f"= {prefix} prefix + {patches}; fix grid or the number of prefix tokens"
        )
    return int(rows), int(cols)


def as_rgb_uint8(image, what: str = "image") -> np.ndarray:
    """(H, W, 3) uint8 from (H, W, 3|4) or (H, W): uint8, other ints in 0..255, bool, or float in [0, 1].

    Numpy arrays, torch tensors and PIL images are accepted; the alpha channel is dropped.
    """
    a = as_array(image, what, keep_integers=True)
    if a.ndim == 3 and a.shape[0] in (1, 3, 4) and a.shape[-1] not in (1, 3, 4):
        raise ValueError(
            f"{what} looks channel-first, shape {a.shape}; pass (height, width, 3), "
            "e.g. image.permute(1, 2, 0) for a torch tensor"
        )
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=-1)
    if a.ndim != 3 or a.shape[-1] not in (3, 4):
        raise ValueError(
            f"{what} must be (height, width, 3) RGB, (height, width, 4) RGBA or (height, width) "
            f"gray, not shape {a.shape}"
        )
    a = a[..., :3]
    if 0 in a.shape:
        raise ValueError(f"{what} is empty: shape {a.shape}")
    if a.dtype.kind == "f":
        if not np.isfinite(a).all():
            raise ValueError(f"{what} holds NaN or infinite values")
        low, high = float(a.min()), float(a.max())
        if low < 0 or high > 1:
            raise ValueError(
                f"a float {what} must lie in [0, 1]; got values from {low:.3g} to {high:.3g}. "
                "Undo the normalisation (x * std + mean), or pass uint8 0..255; "
                "visualizer.models.prepare_image() returns a display image for this."
            )
        return np.rint(a * 255).astype(np.uint8)
    if a.dtype.kind == "b":
        return a.astype(np.uint8) * np.uint8(255)
    if a.dtype != np.uint8 and (a.min() < 0 or a.max() > 255):
        raise ValueError(f"an integer {what} must lie in 0..255; got values from {a.min()} to {a.max()}")
    return a.astype(np.uint8)
