"""Numbers from attention maps: rollout, entropy, strongest pairs, mean distance, statistics.

    >>> from visualizer.analysis import rollout, entropy
    >>> maps = get_local.cache["Attention.forward"]       # 12 layers of (batch, heads, 197, 197)
    >>> rollout(maps).shape                               # (batch, 197, 197), rows sum to 1
    >>> rollout(maps)[0, 0, 1:].reshape(14, 14)           # CLS over the 14 x 14 patches
    >>> entropy(maps[5]).shape                            # (batch, heads), in nats

Every function takes numpy arrays or torch tensors (detached and moved to the CPU; bf16 and
fp16 widened to float32) and returns numpy arrays or plain Python values. Shapes are written
(batch, heads, queries, keys); the batch axis is optional everywhere and comes back only
when it went in. Only numpy is needed: torch is never imported here.

Given an ``AttentionMaps``, every function reads what the capture declared about each
layer (``maps.infos``: path, role, kind, block, depth, layout) and never guesses from
module names. Functions that need token-to-token maps (:func:`rollout`,
:func:`mean_attention_distance`) refuse windowed (Swin) and channel (XCiT) layouts with a
:class:`~visualizer.LayoutError` that says what to do, e.g. ``maps.scatter(name)``.
Plain inputs (lists, dicts, arrays) declare nothing: they are taken as token maps, and
:func:`attention_stats` reports their role, kind and layout as unknown (None).

An ``AttentionMaps`` is read in bounded memory: :func:`entropy`, :func:`top_k_pairs`,
:func:`mean_attention_distance` and :func:`attention_stats` read a block of query rows at a
time (``maps.row_blocks``), so the map of a rebuilt layer is never built whole, and
:func:`rollout` builds one layer at a time. Results are those of the whole maps, to float
rounding.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping

import numpy as np

from visualizer import _blockwise
from visualizer._arrays import (
    as_array,
    check_layer_shapes,
    image_geometry,
    layer_infos,
    layer_maps,
    require_token_layers,
    split_layers,
)
from visualizer._maps import AttentionMaps
from visualizer._validate import index, positive_int

__all__ = ["attention_stats", "entropy", "mean_attention_distance", "rollout", "top_k_pairs"]

HEAD_FUSIONS = ("mean", "max", "min")


def rollout(attentions, head_fusion: str = "mean", discard_ratio: float = 0.0, start_layer: int = 0):
    """Attention rollout (Abnar & Zuidema 2020): how much each token draws on each input token.

    >>> r = rollout(cache["Attention.forward"])           # 12 x (1, 6, 197, 197) -> (1, 197, 197)
    >>> r[0, 0, 1:].reshape(14, 14)                       # the CLS token's sources over the patches

    ``attentions`` is one map per layer, first layer first: a sequence (list, tuple, a
    get_local cache entry, an ``AttentionMaps``) of arrays or tensors shaped
    (heads, T, T) or (batch, heads, T, T), or one stacked array (layers, heads, T, T) or
    (layers, batch, heads, T, T). The result is (T, T), or (batch, T, T) when the maps
    have a batch axis; every row sums to 1.

    For each layer from ``start_layer`` on:

    1. fuse the heads: their ``mean`` (the paper), ``max`` or ``min``;
    2. if ``discard_ratio`` > 0, zero the weakest weights of each row (below);
    3. renormalise the rows to sum to 1, so the next step gives the residual exactly half
       whatever the fusion (a max-fused row sums to more than 1, a min-fused one to less);
    4. add the residual connection, ``A = 0.5 * A + 0.5 * I``, and renormalise the rows;
    5. multiply: ``R = A_l @ R``, so that ``R = A_L ... A_1`` with later layers on the left.

    With mean fusion and no discarding, steps 2 and 3 change nothing, and this is the
    paper's method exactly.

    Discarding works row by row: each query's weights are a distribution, so a query's
    weakest links are judged against its own row, not against the whole matrix. In row
    ``q``, the key ``q`` itself (the self connection) and key 0 (CLS in ViT and BERT) are
    never discarded. Of the other keys, the ``floor(discard_ratio * n)`` weakest are set to
    0, where ``n`` is how many other keys the row has (``T - 2``, or ``T - 1`` in row 0);
    ties go to the lower key index. Since ``discard_ratio < 1`` at least one of them
    survives, and the kept weights are renormalised in step 3, so no row ever sums to 0.
    (The popular vit-explain code instead ranks the whole flattened matrix, keeps only the
    (0, 0) entry, edits only the first batch item, and normalises without ``keepdim``, which
    divides by column sums.)

    An ``AttentionMaps`` must hold self-attention of one stack with a tokens layout, as its
    capture declares: cross-attention, a mix of encoder and decoder layers, or windowed and
    channel layouts are refused (select layers with ``capture_attention(model, layers=...)``).
    Its shapes are checked before any map is built; then each layer from ``start_layer`` on is
    built, checked, fused and dropped, one at a time (layers before ``start_layer`` are not read).
    """
    if not isinstance(head_fusion, str) or head_fusion not in HEAD_FUSIONS:
        raise ValueError(f"rollout(): head_fusion must be one of {HEAD_FUSIONS}, not {head_fusion!r}")
    if isinstance(discard_ratio, bool) or not isinstance(discard_ratio, numbers.Real):
        raise TypeError(f"rollout(): discard_ratio must be a number in [0, 1), not {discard_ratio!r}")
    if not 0.0 <= discard_ratio < 1.0:
        raise ValueError(
            f"rollout(): discard_ratio must be in [0, 1), not {discard_ratio!r}: it is the fraction "
            "of each row's weights set to 0, and at least one must stay"
        )
    infos = layer_infos(attentions)
    if infos is not None:  # before any conversion: windowed layers differ in shape
        _check_chainable(infos)
        layers, batched = _LayersOneByOne(attentions, "rollout(): attentions"), True
        shapes = layers.shapes
        start = index(start_layer, len(shapes), "rollout(): start_layer", "layer")
        for i, shape in enumerate(shapes):
            _check_square(shape, i)  # the weights are checked as each layer is built
    else:
        layers, batched = layer_maps(attentions, "rollout(): attentions")
        shapes = [attn.shape for attn in layers]
        start = index(start_layer, len(shapes), "rollout(): start_layer", "layer")
        for i, attn in enumerate(layers):
            _check_rollout_layer(attn, i)
            _check_square(attn.shape, i)
    batch, tokens = shapes[0][0], shapes[0][-1]
    eye = np.eye(tokens)
    result = np.broadcast_to(eye, (batch, tokens, tokens)).copy()
    for i in range(start, len(shapes)):
        fused = _fuse(layers[i], head_fusion)
        if discard_ratio > 0:
            fused = _discard_weakest(fused, discard_ratio)
        mixed = 0.5 * _normalise_rows(fused) + 0.5 * eye
        result = _normalise_rows(mixed) @ result
    return result if batched else result[0]


def entropy(attn, *, layer: int | str | None = None, call: int | None = None):
    """Each head's attention entropy: the mean over queries of each row's entropy, in nats.

    >>> entropy(maps[3])            # (batch, heads, T, T) -> (batch, heads)
    >>> entropy(maps[3][0])         # (heads, T, T) -> (heads,)
    >>> entropy(maps, layer=3)      # the same as entropy(maps[3]), a block of rows at a time

    Row ``q`` contributes ``-sum_k p[q, k] * log(p[q, k])`` with ``0 * log 0 = 0``; rows are
    taken as given (softmax rows sum to 1). A head attending to a single key scores 0; one
    spreading evenly over K keys scores ``log(K)``. Queries and keys may differ in number
    (cross-attention). It reads one layer's map: given an ``AttentionMaps``, name the layer,
    ``layer=i`` or ``layer="path"`` (and ``call=`` for a layer that ran several times); its
    rows are then read a block at a time, so a rebuilt map is never built whole. Without
    ``layer=`` it asks for one rather than pick.
    """
    if _one_layer_of(attn, layer, call, "entropy(): attn", "entropy(maps, layer=i)"):
        return _blockwise.row_entropy(attn, layer, call, "entropy(): attn")
    a = as_array(attn, "entropy(): attn")
    if a.ndim not in (3, 4):
        raise ValueError(
            "entropy(): attn must be (heads, queries, keys) or (batch, heads, queries, keys), "
            f"not shape {a.shape}"
        )
    _check_probabilities(a, "entropy(): attn")
    plogp = a * np.log(np.where(a > 0, a, 1))
    return -plogp.sum(axis=-1, dtype=np.float64).mean(axis=-1)


def top_k_pairs(
    attn,
    k: int,
    *,
    layer: int | str | None = None,
    item: int | None = None,
    head: int | None = None,
    call: int | None = None,
):
    """The ``k`` strongest (query, key, weight) links, strongest first.

    >>> top_k_pairs(maps[3][0, 2], 3)       # head 2 of item 0: (T, T)
    [(5, 0, 0.91), (6, 0, 0.88), (1, 1, 0.6)]
    >>> top_k_pairs(maps[3][0], 3)          # (heads, T, T): the mean over the heads
    >>> top_k_pairs(maps, 3, layer=3, item=0, head=2)   # as the first, a block of rows at a time

    ``attn`` is (queries, keys), or (heads, queries, keys), which is averaged over the heads
    first. Pick one batch item yourself (``attn[0]``). Ties keep row-major order (lower query,
    then lower key); ``k`` larger than the number of pairs returns all of them. Indices are
    ``int`` and weights ``float``. For a windowed layer, ``maps.scatter(name)[0]`` gives the
    pairs as token indices.

    Given an ``AttentionMaps``, name the layer (``layer=``, and ``call=`` for a layer that
    ran several times), the batch item (``item=``, which may be left out when there is only
    one) and optionally one head (``head=``; None: the mean of the heads). Its rows are then
    read a block at a time and a rebuilt map is never built whole; without ``layer=`` it is
    refused (TypeError), as by :func:`entropy`.
    """
    k = positive_int(k, "top_k_pairs(): k")
    if _one_layer_of(attn, layer, call, "top_k_pairs(): attn", "top_k_pairs(maps, k, layer=i, item=b)"):
        batch, heads = _blockwise.layer_shape(attn, layer, call)[:2]
        if item is None and batch > 1:
            raise ValueError(
                f"top_k_pairs(): layer {layer!r} holds {batch} batch items; pick one: item=b (0..{batch - 1})"
            )
        item = index(0 if item is None else item, batch, "top_k_pairs(): item", "batch item")
        if head is not None:
            head = index(head, heads, "top_k_pairs(): head", "head")
        return _blockwise.strongest_pairs(attn, layer, call, k, item, head, "top_k_pairs(): attn")
    if item is not None or head is not None:
        raise TypeError(
            "top_k_pairs(): item= and head= pick from a layer of an AttentionMaps (with layer=); "
            "index a map yourself, attn[item, head]"
        )
    a = as_array(attn, "top_k_pairs(): attn")
    if a.ndim == 3:
        a = a.mean(axis=0, dtype=np.float64)
    elif a.ndim != 2:
        hint = "; select one batch item first, e.g. attn[0]" if a.ndim == 4 else ""
        raise ValueError(
            "top_k_pairs(): attn must be (queries, keys) or (heads, queries, keys), "
            f"not shape {a.shape}{hint}"
        )
    if np.isnan(a).any():
        raise ValueError("top_k_pairs(): attn holds NaN weights")
    flat = a.ravel()
    order = np.argsort(-flat, kind="stable")[: int(k)]
    keys = a.shape[1]
    return [(int(i // keys), int(i % keys), float(flat[i])) for i in order]


def mean_attention_distance(
    attn,
    grid=None,
    cls_token: bool | int | None = None,
    patch_size: float = 1,
    *,
    renormalize: bool = True,
    layer: int | str | None = None,
    call: int | None = None,
):
    """Each head's mean attention distance over the patch grid (ViT paper, Fig. 7).

    >>> mean_attention_distance(maps, layer=0)                      # (batch, heads), the grid declared
    >>> mean_attention_distance(maps[0], (14, 14))                  # (batch, heads), in patches
    >>> mean_attention_distance(maps[0][0], 14, patch_size=16)      # (heads,), in pixels

    ``attn`` is (heads, T, T) or (batch, heads, T, T) with ``T = prefix + rows * cols``.
    ``grid`` is (rows, cols), an int for a square grid, or None: the grid a capture declared
    for the layer, else a square one inferred from T. ``cls_token`` says how many prefix
    tokens (CLS, distillation, registers) lead the sequence: True is 1, False is 0, an int is
    that many, None what the capture declared (else 1). Their rows and columns are left
    out, since they have no place on the grid.

    For each query patch this is the attention-weighted mean Euclidean distance to the key
    patches, between patch centres ``(row, col)``, times ``patch_size`` (1: in patches; the
    patch size in pixels: in pixels, as in the paper). The result is the mean over query
    patches.

    ``renormalize=True`` (the default) divides each query's patch weights by their sum
    first, so the result is a true mean distance to where the head looks on the image; a
    head that puts most of its weight on CLS is then not mistaken for a local one. With
    ``renormalize=False`` the weights on prefix tokens count as distance 0, as in some
    public re-implementations. A query with no weight on any patch is left out of the mean
    (all such queries: NaN).

    ``attn`` may also be an ``AttentionMaps``: the result is then every layer's, stacked,
    (layers, batch, heads), or one layer's (batch, heads) with ``layer=i`` (and ``call=``
    for a layer that ran several times). Its rows are read a block at a time, so a rebuilt
    map is never built whole. Each layer must be declared with a tokens layout; for one
    windowed (Swin) layer, pass ``maps.scatter(name)`` with ``cls_token=False`` and
    ``grid=maps.layout(name).size``.
    """
    if isinstance(attn, AttentionMaps):
        infos = attn.infos
        chosen = range(len(infos)) if layer is None else [infos.index(attn.info(layer))]
        require_token_layers(infos, chosen, "mean_attention_distance()")
        _check_patch_size(patch_size)
        distances = [
            _blockwise.token_distance(
                attn,
                i,
                call,
                grid,
                cls_token,
                patch_size,
                renormalize,
                "mean_attention_distance()",
                "cls_token",
            )
            for i in chosen
        ]
        if layer is not None:
            return distances[0]
        if len({d.shape for d in distances}) > 1:
            shapes = ", ".join(f"{info.path} {d.shape}" for info, d in zip(infos, distances))
            raise ValueError(
                f"mean_attention_distance(): the layers give (batch, heads) of different shapes ({shapes}); "
                "pass them one at a time, maps[i]"
            )
        return np.stack(distances)
    if layer is not None or call is not None:
        raise TypeError(_NOT_MAPS.format(what="mean_attention_distance()"))
    a = as_array(attn, "mean_attention_distance(): attn")
    if a.ndim not in (3, 4):
        raise ValueError(
            "mean_attention_distance(): attn must be (heads, T, T) or (batch, heads, T, T), "
            f"not shape {a.shape}"
        )
    if a.shape[-1] != a.shape[-2]:
        raise ValueError(
            f"mean_attention_distance(): attn must be square self-attention over the image tokens, "
            f"not {a.shape[-2]} queries x {a.shape[-1]} keys"
        )
    _check_probabilities(a, "mean_attention_distance(): attn")
    rows, cols, prefix = image_geometry(
        a.shape[-1], grid, cls_token, None, "mean_attention_distance()", argument="cls_token"
    )
    _check_patch_size(patch_size)
    idx = np.arange(rows * cols)
    r, c = idx // cols, idx % cols
    distance = np.hypot(r[:, None] - r[None, :], c[:, None] - c[None, :]) * float(patch_size)
    weights = a[..., prefix:, prefix:].astype(np.float64)
    mass = weights.sum(axis=-1)
    if renormalize:
        weights = weights / np.where(mass > 0, mass, 1)[..., None]
    per_query = (weights * distance).sum(axis=-1)
    valid = mass > 0
    counted = valid.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counted > 0, np.where(valid, per_query, 0).sum(axis=-1) / counted, np.nan)


def attention_stats(maps) -> dict:
    """Summary statistics per attention map, ready for ``json.dumps``.

    >>> stats = attention_stats(attention_maps)     # AttentionMaps, {name: map} or [map, ...]
    >>> stats["layers"][0]
    {'name': 'blocks.0.attn', 'stack': None, 'layer': 0, 'type': 'self', 'block': 'blocks.0',
     'layout': 'tokens', 'call': 0, 'shape': [1, 6, 197, 197], 'mean': 0.0051, 'std': 0.021,
     'min': 1.2e-09, 'max': 0.98, 'entropy': 3.9}

    ``maps`` is one of:

    - an ``AttentionMaps``: each entry reports what the capture declared (``maps.infos``):
      ``name``, the module path; ``stack``, its role ("encoder", "decoder", or None for a
      single-stack model); ``type``, its kind ("self" or "cross"); ``block``, the path of
      its block; ``layer``, the block's depth within its role, from 0; ``layout``, the
      layout's name ("tokens", "windows", "channels"); and ``call``, which call of the
      layer (every call of a layer that ran several times has its own entry);
    - a dict ``{name: map}``; a value that is a list of maps (a ``get_local.cache``) becomes
      ``name[0]``, ``name[1]``, ...;
    - a sequence of maps, named ``layer.0``, ``layer.1``, ...

    Plain maps (the last two) declare nothing and nothing is guessed, from names or shapes:
    their ``stack``, ``type``, ``block``, ``layout`` and ``call`` are None, and ``layer`` is
    their position in the input.

    Every entry also has ``shape``; ``mean``, ``std``, ``min``, ``max`` over all values; and
    ``entropy``, the mean row entropy in nats over all rows (None if the map has negative
    values). All values are plain Python; a non-finite number becomes None. An
    ``AttentionMaps`` is read a block of query rows at a time (sums taken block by block),
    so a rebuilt map is never built whole.
    """
    entries = []
    for name, declared, value in _entries(maps):
        what = f"attention_stats(): map {name!r}"
        if isinstance(value, tuple):  # (position, call) of an AttentionMaps: read a block at a time
            _check_stats_shape(_blockwise.layer_shape(maps, *value), name)
            with np.errstate(all="ignore"):
                shape, summary = _blockwise.summary(maps, *value, what)
            entries.append({"name": str(name), **declared, "shape": list(shape), **_plain_all(summary)})
            continue
        a = as_array(value, what)
        _check_stats_shape(a.shape, name)
        if declared is None:
            declared = {"stack": None, "layer": len(entries), "type": None, "block": None, "layout": None}
            declared["call"] = None
        with np.errstate(all="ignore"):  # inf or NaN maps give None below, not warnings
            entries.append({"name": str(name), **declared, **_summary(a)})
    return {"layers": entries}


def _check_stats_shape(shape: tuple, name) -> None:
    if len(shape) < 2 or math.prod(shape) == 0:
        raise ValueError(
            f"attention_stats(): map {name!r} has shape {tuple(shape)}; a map needs at least (queries, keys)"
        )


def _plain_all(summary: dict) -> dict:
    return {name: None if value is None else _plain(value) for name, value in summary.items()}


def _entries(maps):
    """(name, declared fields or None, map) for each map, in model order."""
    if isinstance(maps, AttentionMaps):
        for position, info in enumerate(maps.infos):
            for call in range(info.calls):
                declared = {
                    "stack": info.role,
                    "layer": info.depth,
                    "type": info.kind,
                    "block": info.block,
                    "layout": maps.layout(position, call).name,
                    "call": call,
                }
                yield info.path, declared, (position, call)
        return
    if isinstance(maps, Mapping):
        pairs = list(maps.items())
    elif isinstance(maps, (str, bytes)) or maps is None:
        raise TypeError(
            f"attention_stats(): maps must be AttentionMaps, a dict or a sequence, not {type(maps).__name__}"
        )
    elif isinstance(maps, np.ndarray) or hasattr(maps, "detach"):
        raise TypeError(
            "attention_stats(): maps must be AttentionMaps, a dict {name: map} or a list of maps, not one "
            "array; for a stacked (layers, ...) array pass list(array)"
        )
    else:
        try:
            pairs = [(f"layer.{i}", item) for i, item in enumerate(maps)]
        except TypeError:
            raise TypeError(
                "attention_stats(): maps must be AttentionMaps, a dict or a sequence, "
                f"not {type(maps).__name__}"
            ) from None
    for name, value in pairs:
        if isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                yield f"{name}[{i}]", None, item
        else:
            yield name, None, value


def _summary(a: np.ndarray) -> dict:
    plogp = None if (a < 0).any() else a * np.log(np.where(a > 0, a, 1))
    return {
        "shape": [int(n) for n in a.shape],
        "mean": _plain(a.mean(dtype=np.float64)),
        "std": _plain(a.std(dtype=np.float64)),
        "min": _plain(a.min()),
        "max": _plain(a.max()),
        "entropy": None if plogp is None else _plain(-plogp.sum(axis=-1, dtype=np.float64).mean()),
    }


def _check_rollout_layer(attn: np.ndarray, i: int) -> None:
    if np.isnan(attn).any() or (attn < 0).any():
        raise ValueError(
            f"rollout(): layer {i} holds negative or NaN weights; pass attention probabilities "
            "(after the softmax), not scores"
        )


def _check_square(shape: tuple, i: int) -> None:
    if shape[-1] != shape[-2]:
        raise ValueError(
            f"rollout(): layer {i} has {shape[-2]} queries and {shape[-1]} keys; rollout needs "
            "square self-attention maps (cross-attention cannot be chained through layers)"
        )


class _LayersOneByOne:
    """The layers of an AttentionMaps for rollout: shapes checked up front without building a map,
    and ``[i]`` builds layer i (checked as a plain layer is) for the caller to drop after use."""

    def __init__(self, maps: AttentionMaps, what: str) -> None:
        if not len(maps):
            split_layers(maps, what)  # its message for an empty capture
        self.maps, self.what = maps, what
        self.shapes = [_blockwise.layer_shape(maps, i, None) for i in range(len(maps))]
        check_layer_shapes(self.shapes, list(range(len(maps))), what)

    def __getitem__(self, i: int) -> np.ndarray:
        attn = _blockwise.whole_layer(self.maps, i, f"{self.what}[{i}]")
        _check_rollout_layer(attn, i)
        return attn


def _check_chainable(infos) -> None:
    """Rollout chains the self-attention of one stack, on tokens: what the capture declared must say so."""
    require_token_layers(infos, range(len(infos)), "rollout()")
    cross = [info.path for info in infos if info.kind != "self"]
    if cross:
        raise ValueError(
            f"rollout(): {', '.join(cross[:4])} {'is' if len(cross) == 1 else 'are'} declared "
            "cross-attention, which cannot be chained through layers; roll out one stack's "
            "self-attention, e.g. "
            "[maps[i] for i, info in enumerate(maps.infos) if info.role == 'encoder' and info.kind == 'self']"
        )
    roles = list(dict.fromkeys(info.role for info in infos))
    if len(roles) > 1:
        raise ValueError(
            f"rollout(): the maps mix layers of the {' and '.join(map(str, roles))} stacks; tokens of one "
            "stack are not those of the other, so roll out one of them, e.g. "
            "[maps[i] for i, info in enumerate(maps.infos) if info.role == 'encoder']"
        )


def _fuse(attn: np.ndarray, head_fusion: str) -> np.ndarray:
    """(batch, heads, T, T) -> (batch, T, T) in float64."""
    if head_fusion == "mean":
        return attn.mean(axis=1, dtype=np.float64)
    reduce = np.max if head_fusion == "max" else np.min
    return reduce(attn, axis=1).astype(np.float64)


def _discard_weakest(fused: np.ndarray, ratio: float) -> np.ndarray:
    """Zero each row's weakest keys, never the self connection nor key 0 (see rollout)."""
    tokens = fused.shape[-1]
    diagonal = np.arange(tokens)
    ranked = fused.copy()
    ranked[:, diagonal, diagonal] = np.inf
    ranked[:, :, 0] = np.inf
    order = np.argsort(ranked, axis=-1, kind="stable")
    candidates = np.full(tokens, max(tokens - 2, 0))
    candidates[0] = tokens - 1
    # The epsilon keeps e.g. 0.3 * 10 == 3.0000000000000004 from a float artefact in floor().
    drop_count = np.floor(ratio * candidates + 1e-9).astype(int)
    drop_by_rank = np.broadcast_to(diagonal[None, None, :] < drop_count[None, :, None], fused.shape)
    drop = np.zeros(fused.shape, dtype=bool)
    np.put_along_axis(drop, order, drop_by_rank, axis=-1)
    return np.where(drop, 0.0, fused)


def _normalise_rows(a: np.ndarray) -> np.ndarray:
    sums = a.sum(axis=-1, keepdims=True)
    return a / np.where(sums > 0, sums, 1)


_check_probabilities = _blockwise.check_probabilities

_NOT_MAPS = (
    "{what}: layer= and call= pick a layer of an AttentionMaps; the map given is already one layer's, "
    "so leave them out"
)


def _one_layer_of(attn, layer, call, what: str, fix: str) -> bool:
    """Whether ``attn`` is an AttentionMaps with ``layer`` named (then read block by block)."""
    if not isinstance(attn, AttentionMaps):
        if layer is not None or call is not None:
            raise TypeError(_NOT_MAPS.format(what=what.split(":")[0]))
        return False
    if layer is None:
        raise TypeError(
            f"{what} is one layer's map, not an AttentionMaps of {len(attn)} layers; name one: {fix} "
            "reads it a block of rows at a time (maps[i] builds it whole; maps.scatter('path') puts a "
            "windowed layer on the token grid)"
        )
    return True


def _check_patch_size(patch_size) -> None:
    if isinstance(patch_size, bool) or not isinstance(patch_size, numbers.Real) or not patch_size > 0:
        raise ValueError(
            f"mean_attention_distance(): patch_size must be a positive number, not {patch_size!r}"
        )


def _plain(x) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None
