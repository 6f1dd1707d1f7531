"""User-supplied attention maps and images, brought to one form (for analysis, plots and view).

>>> given = as_maps(outputs.attentions, "rollout(): attentions")  # the one conversion at entry
>>> given.maps.infos[0].path, given.batched                      # an AttentionMaps; batch axis in?
('layer 0', True)
>>> one_layer(given.maps, None, "entropy(): attn", "entropy(maps, layer=i)")   # the only layer, or asks
>>> read_item(maps, 3, 0, "plot_heads()").shape                  # (heads, queries, keys), numpy
(6, 197, 197)
>>> as_array(attn, "entropy(): attn").dtype                      # a bf16 tensor: detached, on the CPU
dtype('float32')
>>> as_rgb_uint8(picture, "image").shape                         # uint8 or float in [0, 1], RGB, RGBA or gray
(224, 224, 3)
>>> image_geometry(197, None, None, maps.layout(0), "plot")      # (rows, cols, prefix): declared here
(14, 14, 1)

Every analysis, plot and view function turns what it is given into an ``AttentionMaps``
once, with :func:`as_maps` (the rule for plain arrays is that of
:meth:`AttentionMaps.from_arrays <visualizer.AttentionMaps.from_arrays>`), and reads its
layers from there; plain maps declare nothing but their position, and nothing is guessed.

``what`` names the argument in the error messages, e.g. "rollout(): attentions". Torch is
never imported here: a tensor is recognised only when torch is already in ``sys.modules``.
"""

from __future__ import annotations

import math
import numbers
import sys
from collections.abc import Mapping
from typing import NamedTuple

import numpy as np

from visualizer._maps import AttentionMaps, MapsBuilder
from visualizer._structure import KINDS, ROLES, TOKENS, LayerInfo, Tokens, require_tokens
from visualizer._validate import index, indices

__all__ = [
    "HF_KEYS",
    "Maps",
    "as_array",
    "as_maps",
    "as_rgb_uint8",
    "declared_defaults",
    "layer_array",
    "image_geometry",
    "layer_label",
    "maps_from_arrays",
    "one_layer",
    "patch_grid",
    "pick_layers",
    "prefix_count",
    "read_item",
    "require_square",
]

#: The attention fields of a Hugging Face output, in model order (:func:`maps_from_arrays`).
HF_KEYS = ("attentions", "encoder_attentions", "decoder_attentions", "cross_attentions")

_RULE = (
    "a tuple or list holds layers; one array is (queries, keys), (heads, queries, keys) or "
    "(batch, heads, queries, keys) for one layer, (layers, batch, heads, queries, keys) for several"
)


_EMPTY_FIX = (
    "From a Hugging Face model: pass outputs.attentions (outputs[-1] is often the empty "
    'cross_attentions), with the model loaded with attn_implementation="eager" and called with '
    "output_attentions=True; or capture any kernel's maps with capture_attention(model)"
)


def as_array(value, what: str, *, keep_integers: bool = False) -> np.ndarray:
    """A numpy array of real numbers from a numpy array, a torch tensor or nested lists.

    Tensors are detached and moved to the CPU; bf16 (which numpy lacks) and fp16 become
    float32. Integers and bools become float64, ready for arithmetic, unless
    ``keep_integers`` (a uint8 picture stays uint8).
    """
    kind = type(value).__name__
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        if value.dtype in (torch.bfloat16, torch.float16):
            value = value.float()
        value = value.numpy()
    if isinstance(value, (str, bytes, Mapping, AttentionMaps)) or value is None:
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


class Maps(NamedTuple):
    """What a function was given, as :func:`as_maps` brought it in."""

    maps: AttentionMaps
    batched: bool  # whether any layer came with a batch axis (results keep it only then)
    single: bool  # one plain array of one layer (2, 3 or 4 axes): a one-layer result is not stacked


def as_maps(attentions, what: str) -> Maps:
    """``attentions`` as an ``AttentionMaps`` (:func:`maps_from_arrays`), checked to hold a layer."""
    if isinstance(attentions, AttentionMaps):
        maps, batched, single = attentions, True, False
    else:
        maps, batched = _convert(attentions, None, None, what)
        single = _is_array(attentions) and len(attentions.shape) < 5
    if not len(maps):
        why = maps.diagnosis or "was the capture active while the model ran?"
        raise ValueError(f"{what} holds no captured layer: {why}")
    return Maps(maps, batched, single)


def maps_from_arrays(attentions, role=None, kind=None, what: str = "AttentionMaps.from_arrays()"):
    """:meth:`AttentionMaps.from_arrays`: see its rule. ``what`` names the input in errors."""
    if isinstance(attentions, AttentionMaps):
        return attentions
    return _convert(attentions, role, kind, what)[0]


def _convert(attentions, role, kind, what: str) -> tuple[AttentionMaps, bool]:
    if role not in ROLES or kind not in (*KINDS, None):
        raise ValueError(
            f"{what}: role must be one of {ROLES} and kind one of {(*KINDS, None)}, not {role!r}, {kind!r}"
        )
    declared = getattr(attentions, "__dataclass_fields__", None) or (
        attentions if isinstance(attentions, Mapping) else {}
    )
    if any(key in declared for key in HF_KEYS):  # a Hugging Face output (a ModelOutput drops None fields)
        layers = _hf_layers(attentions, what)
    elif isinstance(attentions, Mapping):
        named = []
        for name, value in attentions.items():
            if isinstance(value, (list, tuple)):
                named += [(f"{name}[{i}]", [item]) for i, item in enumerate(value)]
            else:
                named.append((str(name), [value]))
        layers = [(path, role, kind, path, depth, calls) for depth, (path, calls) in enumerate(named)]
    else:
        split = _split(attentions, what)
        layers = [(f"layer {i}", role, kind, f"layer {i}", i, calls) for i, calls in enumerate(split)]
    if not layers:
        raise ValueError(f"{what} is empty: pass at least one layer's map. {_EMPTY_FIX}")
    builder = MapsBuilder("", len(layers))
    batched = False
    for position, (path, role_, kind_, block, depth, calls) in enumerate(layers):
        info = LayerInfo(path, position, role_, kind_, block, depth, TOKENS, "arrays", module=False)
        handle = builder.add(info)
        for call, value in enumerate(calls):
            value, had_batch = _one_map(
                value, f"{what}: {path}" + (f", call {call}" if len(calls) > 1 else "")
            )
            batched = batched or had_batch
            builder.ran(handle)
            builder.record(handle, value, TOKENS)
    return builder.maps, batched


def _hf_layers(output: Mapping, what: str) -> list[tuple]:
    """(path, role, kind, block, depth, calls) of each layer of a Hugging Face output, in model order."""
    fields = {key: getattr(output, key) if hasattr(output, key) else output.get(key) for key in HF_KEYS}
    # Fields left out (None) or empty (transformers 5 fills cross_attentions of an encoder with ()).
    split = {
        key: _split(value, f"{what}: {key}")
        for key, value in fields.items()
        if value is not None and len(value)
    }
    layers = [
        (f"attentions[{i}]", None, "self", f"layers[{i}]", i, calls)
        for i, calls in enumerate(split.get("attentions", []))
    ]
    layers += [
        (f"encoder_attentions[{i}]", "encoder", "self", f"encoder[{i}]", i, calls)
        for i, calls in enumerate(split.get("encoder_attentions", []))
    ]
    decoder, cross = split.get("decoder_attentions", []), split.get("cross_attentions", [])
    for i in range(max(len(decoder), len(cross))):
        for key, kind, stack in (
            ("decoder_attentions", "self", decoder),
            ("cross_attentions", "cross", cross),
        ):
            if i < len(stack):
                layers.append((f"{key}[{i}]", "decoder", kind, f"decoder[{i}]", i, stack[i]))
    return layers


def _is_array(value) -> bool:
    torch = sys.modules.get("torch")
    return isinstance(value, np.ndarray) or (torch is not None and isinstance(value, torch.Tensor))


def _split(attentions, what: str) -> list[list]:
    """The calls of each layer: one each, or one per step of ``generate()``'s per-step tuples."""
    if _is_array(attentions):
        shape = tuple(attentions.shape)
        if len(shape) == 5:
            return [[layer] for layer in attentions]
        if len(shape) in (2, 3, 4):
            return [[attentions]]
        raise ValueError(f"{what} has shape {shape}: {_RULE}")
    items = None
    if not isinstance(attentions, (str, bytes, Mapping)) and attentions is not None:
        try:
            items = list(attentions)
        except TypeError:
            pass
    if items is None:
        raise TypeError(
            f"{what} must be an AttentionMaps or plain maps ({_RULE}), not {type(attentions).__name__}"
        )
    if not items:
        raise ValueError(f"{what} is empty: pass at least one layer's map. {_EMPTY_FIX}")
    steps = [item for item in items if isinstance(item, (list, tuple)) and item and _is_array(item[0])]
    if len(steps) != len(items):
        return [[item] for item in items]
    counts = {len(step) for step in steps}  # generate(): one tuple of layers per step
    if len(counts) > 1:
        raise ValueError(f"{what}: the steps hold different numbers of layers ({sorted(counts)})")
    return [[step[i] for step in steps] for i in range(counts.pop())]


def _one_map(value, what: str):
    """One layer's map as (batch, heads, queries, keys), a view of what was given (tensors
    detached), and whether it had a batch axis."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        if value.is_complex():
            raise TypeError(f"{what} must hold real numbers, not {value.dtype}")
        a = value.detach()
    else:
        a = value if isinstance(value, np.ndarray) and value.dtype.kind in "biuf" else as_array(value, what)
    if len(a.shape) not in (2, 3, 4):
        raise ValueError(f"{what} has shape {tuple(a.shape)}: {_RULE}")
    if 0 in a.shape:
        raise ValueError(f"{what} has an empty dimension: {tuple(a.shape)}")
    had_batch = len(a.shape) == 4
    return a[(None,) * (4 - len(a.shape))], had_batch


def one_layer(maps: AttentionMaps, layer, what: str, fix: str | None) -> int:
    """The position of the layer named (a position or a path), or of the only layer when None;
    ``fix`` says how to name one (None: the function takes one layer's map only)."""
    if layer is None:
        if len(maps) == 1:
            return 0
        how = (
            f"name one: {fix} (or pass one layer's map, maps[i])" if fix else "pass one layer's map, maps[i]"
        )
        raise TypeError(f"{what} holds {len(maps)} layers; {how}")
    return maps.names.index(maps.info(layer).path)


def pick_layers(maps: AttentionMaps, layers, what: str, batch=None) -> list[int]:
    """The positions ``layers`` selects (None: all), each declared with a tokens layout, agreeing
    in batch size, queries and keys; ``batch``, when given, is checked against them."""
    chosen = indices(layers, len(maps), f"{what}: layers", "layer")
    for i in chosen:
        require_tokens(maps.layout(i), f"{what}: layer {i} ({maps.info(i).path!r})")
    shapes = [tuple(maps.shape(i)) for i in chosen]
    first = shapes[0]
    for i, shape in zip(chosen, shapes):
        if (shape[0], shape[2], shape[3]) != (first[0], first[2], first[3]):
            raise ValueError(
                f"{what}: layer {i} has shape {shape} but layer {chosen[0]} has {first}; batch size, "
                "queries and keys must agree across layers"
            )
    if batch is not None:
        index(batch, first[0], f"{what}: batch", "batch item")
    return chosen


def layer_array(attentions, what: str) -> np.ndarray:
    """The one layer ``attentions`` holds, whole: (batch, heads, queries, keys) as numpy (for
    measures of a few small maps that take one layer only; analysis reads rows)."""
    maps = as_maps(attentions, what).maps
    return as_array(maps.read(one_layer(maps, None, what, None)), what)


def require_square(shape, what: str) -> None:
    """ValueError unless a map of ``shape`` is square self-attention (as many queries as keys)."""
    if shape[-1] != shape[-2]:
        raise ValueError(
            f"{what}: the map must be square self-attention over the image tokens, not "
            f"{shape[-2]} queries x {shape[-1]} keys"
        )


def read_item(
    maps: AttentionMaps, layer, batch, what: str, *, rows=None, heads=None, call=None
) -> np.ndarray:
    """(heads, queries, keys) of batch item ``batch`` of one layer (only ``rows``, ``heads``), as numpy."""
    item = index(batch, maps.shape(layer, call)[0], f"{what}: batch", "batch item")
    return as_array(maps.read(layer, batch=[item], rows=rows, heads=heads, call=call), what)[0]


def layer_label(info: LayerInfo) -> str:
    """A short caption: ``"layer 3"``, ``"decoder layer 1, cross"``."""
    role = f"{info.role} " if info.role else ""
    kind = ", cross" if info.kind == "cross" else ""
    return f"{role}layer {info.depth}{kind}"


def prefix_count(value, what: str) -> int:
    """How many prefix tokens: True is 1, False is 0, an int >= 0 is itself."""
    if isinstance(value, bool):
        return int(value)
    if not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{what} must be True, False or a count >= 0 of prefix tokens, not {value!r}")
    return int(value)


def declared_defaults(grid, prefix_tokens, declared) -> tuple:
    """``(grid, prefix_tokens)``, each as given, else what a capture declared (``declared``, a
    layout, ``maps.layout(layer, call)``): its prefix tokens, and its grid where the prefix is the
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
    tokens: int, grid, prefix_tokens, declared, what: str, argument: str = "prefix_tokens", aspect=None
) -> tuple[int, int, int]:
    """(rows, cols, prefix) of the image patches among ``tokens`` keys.

    ``grid`` and ``prefix_tokens`` where given (each overrides the declared value alone);
    else what the capture declared for the layer (:func:`declared_defaults`); else one prefix
    token and a square grid, as for plain maps.
    """
    grid, prefix_tokens = declared_defaults(grid, prefix_tokens, declared)
    prefix = prefix_count(prefix_tokens, f"{what}: {argument}")
    rows, cols = patch_grid(tokens, grid, prefix, what, aspect)
    return rows, cols, prefix


def patch_grid(tokens: int, grid, prefix: int, what: str, aspect: float | None = None) -> tuple[int, int]:
    """(rows, cols) of the patch grid, checked against the token count. None infers it: a square,
    else, given the image's ``aspect`` (width / height), the grid within 10 % of that aspect."""
    patches = tokens - prefix
    if grid is None:
        side = math.isqrt(max(patches, 0))
        if patches > 0 and side * side == patches:
            return side, side
        if patches > 0 and aspect is not None:
            pairs = [(r, patches // r) for r in range(1, patches + 1) if patches % r == 0]
            rows, cols = min(pairs, key=lambda pair: abs(math.log(pair[1] / pair[0] / aspect)))
            if abs(math.log(cols / rows / aspect)) <= math.log(1.1):
                return rows, cols
        matching = "" if aspect is None else f" nor a grid of the image's aspect ratio ({aspect:.2f})"
        raise ValueError(
            f"{what}: cannot infer the patch grid: {tokens} tokens minus {prefix} prefix token(s) leave "
            f"{patches} patches, not a square number{matching}; pass grid=(rows, cols) or the right "
            "prefix_tokens (1 for CLS, 5 for CLS and 4 registers)"
        )
    if isinstance(grid, numbers.Integral) and not isinstance(grid, bool):
        grid = (grid, grid)
    try:
        rows, cols = grid
    except (TypeError, ValueError):
        rows = cols = None
    if any(isinstance(n, bool) or not isinstance(n, numbers.Integral) for n in (rows, cols)):
        raise TypeError(f"{what}: grid must be (rows, cols), two ints, an int, or None; got {grid!r}")
    rows, cols = int(rows), int(cols)
    if rows < 1 or cols < 1:
        raise ValueError(f"{what}: grid must be (rows, cols), both at least 1; got {grid!r}")
    if rows * cols != patches:
        raise ValueError(
            f"{what}: grid {rows} x {cols} has {rows * cols} patches but the maps have {tokens} tokens "
            f"= {prefix} prefix + {patches}; fix grid or the number of prefix tokens"
        )
    return rows, cols


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
