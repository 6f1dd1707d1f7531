"""Numbers from attention maps: rollout, entropy, strongest pairs, mean distance, statistics.

    >>> from visualizer.analysis import rollout, entropy
    >>> maps = get_local.cache["Attention.forward"]       # 12 layers of (batch, heads, 197, 197)
    >>> rollout(maps).shape                               # (batch, 197, 197), rows sum to 1
    >>> rollout(maps)[0, 0, 1:].reshape(14, 14)           # CLS over the 14 x 14 patches
    >>> entropy(maps[5]).shape                            # (batch, heads), in nats

Every function takes an ``AttentionMaps`` or plain maps, which it turns into one first
(:meth:`AttentionMaps.from_arrays <visualizer.AttentionMaps.from_arrays>`: a tuple or list
holds layers, a 4-axis array is one layer's (batch, heads, queries, keys), a 3-axis one one
item's (heads, queries, keys), a 5-axis one a stack of layers), numpy arrays or torch
tensors (detached; bf16 and fp16 read as float32), and returns numpy arrays or plain Python
values. The batch axis comes back only when it went in. Only numpy is needed: torch is never
imported here.

Each function reads what the capture declared about each layer (``maps.infos``: path,
role, kind, block, depth, layout) and never guesses from module names. Functions that need
token-to-token maps (:func:`rollout`, :func:`mean_attention_distance`) refuse windowed
(Swin) and channel (XCiT) layouts with a :class:`~visualizer.LayoutError` that says what to
do, e.g. ``maps.scatter(name)``.

Maps are read in bounded memory: :func:`entropy`, :func:`top_k_pairs`,
:func:`mean_attention_distance` and :func:`attention_stats` read a block of query rows at a
time (``maps.row_blocks``), so the map of a rebuilt layer is never built whole, and
:func:`rollout` builds one layer at a time. Results are those of the whole maps, to float
rounding.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from visualizer import _blockwise
from visualizer._arrays import as_array, as_maps, one_layer, pick_layers
from visualizer._structure import require_tokens
from visualizer._validate import index, positive_int

__all__ = ["attention_stats", "entropy", "mean_attention_distance", "rollout", "top_k_pairs"]

HEAD_FUSIONS = ("mean", "max", "min")


def rollout(attentions, head_fusion: str = "mean", discard_ratio: float = 0.0, start_layer: int = 0):
    """Attention rollout (Abnar & Zuidema 2020): how much each token draws on each input token.

    >>> r = rollout(cache["Attention.forward"])           # 12 x (1, 6, 197, 197) -> (1, 197, 197)
    >>> r[0, 0, 1:].reshape(14, 14)                       # the CLS token's sources over the patches

    ``attentions`` is one map per layer, first layer first: an ``AttentionMaps``, a sequence
    (list, tuple, a get_local cache entry, ``outputs.attentions``) of arrays or tensors shaped
    (heads, T, T) or (batch, heads, T, T), or one stacked array (layers, batch, heads, T, T).
    The result is (T, T), or (batch, T, T) when the maps have a batch axis; every row sums to 1.

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
    given = as_maps(attentions, "rollout(): attentions")
    maps = given.maps
    _check_chainable(maps.infos)
    shapes = [maps.shape(i) for i in pick_layers(maps, None, "rollout(): attentions")]
    start = index(start_layer, len(shapes), "rollout(): start_layer", "layer")
    for i, shape in enumerate(shapes):
        _check_square(shape, i)  # the weights are checked as each layer is built
    batch, tokens = shapes[0][0], shapes[0][-1]
    eye = np.eye(tokens)
    result = np.broadcast_to(eye, (batch, tokens, tokens)).copy()
    for i in range(start, len(shapes)):
        attn = as_array(maps.read(i), f"rollout(): attentions[{i}]")  # built, used, dropped
        _blockwise.check_probabilities(attn, f"rollout(): layer {i}")
        fused = _fuse(attn, head_fusion)
        if discard_ratio > 0:
            fused = _discard_weakest(fused, discard_ratio)
        mixed = 0.5 * _normalise_rows(fused) + 0.5 * eye
        result = _normalise_rows(mixed) @ result
    return result if given.batched else result[0]


def entropy(attn, *, layer: int | str | None = None, call: int | None = None):
    """Each head's attention entropy: the mean over queries of each row's entropy, in nats.

    >>> entropy(maps[3])            # (batch, heads, T, T) -> (batch, heads)
    >>> entropy(maps[3][0])         # (heads, T, T) -> (heads,)
    >>> entropy(maps, layer=3)      # the same as entropy(maps[3]), a block of rows at a time

    Row ``q`` contributes ``-sum_k p[q, k] * log(p[q, k])`` with ``0 * log 0 = 0``; rows are
    taken as given (softmax rows sum to 1). A head attending to a single key scores 0; one
    spreading evenly over K keys scores ``log(K)``. Queries and keys may differ in number
    (cross-attention). It reads one layer's map: where ``attn`` holds several layers (an
    ``AttentionMaps``, ``outputs.attentions``), name it, ``layer=i`` or ``layer="path"`` (and
    ``call=`` for a layer that ran several times); without ``layer=`` it asks for one rather
    than pick. Rows are read a block at a time, so a rebuilt map is never built whole.
    """
    given = as_maps(attn, "entropy(): attn")
    position = one_layer(given.maps, layer, "entropy(): attn", "entropy(maps, layer=i)")
    result = _blockwise.row_entropy(given.maps, position, call, "entropy(): attn")
    return result if given.batched else result[0]


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

    >>> top_k_pairs(maps, 3, layer=3, item=0, head=2)   # head 2 of item 0 of layer 3
    [(5, 0, 0.91), (6, 0, 0.88), (1, 1, 0.6)]
    >>> top_k_pairs(maps[3][0], 3)          # (heads, T, T): the mean over the heads
    >>> top_k_pairs(attn_2d, 3)             # (T, T)

    ``attn`` holds one layer, or several (name one: ``layer=``, and ``call=`` for a layer
    that ran several times), as for :func:`entropy`. ``item=`` picks the batch item (it may
    be left out when there is only one) and ``head=`` one head (None: the mean of the
    heads). Ties keep row-major order (lower query, then lower key); ``k`` larger than the
    number of pairs returns all of them. Indices are ``int`` and weights ``float``. For a
    windowed layer, ``maps.scatter(name)`` gives the pairs as token indices. Rows are read a
    block at a time, so a rebuilt map is never built whole.
    """
    k = positive_int(k, "top_k_pairs(): k")
    maps = as_maps(attn, "top_k_pairs(): attn").maps
    layer = one_layer(maps, layer, "top_k_pairs(): attn", "top_k_pairs(maps, k, layer=i, item=b)")
    batch, heads = _blockwise.layer_shape(maps, layer, call)[:2]
    if item is None and batch > 1:
        raise ValueError(
            f"top_k_pairs(): layer {layer!r} holds {batch} batch items; pick one: item=b (0..{batch - 1})"
        )
    item = index(0 if item is None else item, batch, "top_k_pairs(): item", "batch item")
    if head is not None:
        head = index(head, heads, "top_k_pairs(): head", "head")
    return _blockwise.strongest_pairs(maps, layer, call, k, item, head, "top_k_pairs(): attn")


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

    ``attn`` is one layer's (heads, T, T) or (batch, heads, T, T), with ``T = prefix + rows * cols``.
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

    Given several layers (an ``AttentionMaps``, a list, a 5-axis stack) the result is every
    layer's, stacked, (layers, batch, heads), or one layer's (batch, heads) with ``layer=i``
    (and ``call=`` for a layer that ran several times). Rows are read a block at a time, so
    a rebuilt map is never built whole. Each layer must be declared with a tokens layout; for
    one windowed (Swin) layer, pass ``maps.scatter(name)`` with ``cls_token=False`` and
    ``grid=maps.layout(name).size``.
    """
    what = "mean_attention_distance()"
    given = as_maps(attn, f"{what}: attn")
    maps = given.maps
    chosen = range(len(maps)) if layer is None else [one_layer(maps, layer, f"{what}: attn", "layer=i")]
    for i in chosen:
        require_tokens(maps.layout(i, -1 if call is None else call), f"{what}: layer {i} ({maps.names[i]!r})")
    _check_patch_size(patch_size)
    distances = [
        _blockwise.token_distance(maps, i, call, grid, cls_token, patch_size, renormalize, what, "cls_token")
        for i in chosen
    ]
    if layer is not None or given.single:
        (result,) = distances
    elif len({d.shape for d in distances}) > 1:
        shapes = ", ".join(f"{path} {d.shape}" for path, d in zip(maps.names, distances))
        raise ValueError(
            f"{what}: the layers give (batch, heads) of different shapes ({shapes}); pick one with layer=i"
        )
    else:
        result = np.stack(distances)
    return result if given.batched else result[..., 0, :]


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
    - any other plain maps (:meth:`AttentionMaps.from_arrays`), named ``layer 0``, ``layer 1``, ...

    Plain maps declare nothing but their place: ``stack`` None, ``type`` "self", ``layout``
    "tokens", ``block`` their name and ``layer`` their position in the input.

    Every entry also has ``shape`` (batch, heads, queries, keys); ``mean``, ``std``,
    ``min``, ``max`` over all values; and ``entropy``, the mean row entropy in nats over all
    rows (None if the map has negative values). All values are plain Python; a non-finite
    number becomes None. Maps are read a block of query rows at a time (sums taken block by block),
    so a rebuilt map is never built whole.
    """
    maps = as_maps(maps, "attention_stats(): maps").maps
    entries = []
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
            what = f"attention_stats(): map {info.path!r}"
            with np.errstate(all="ignore"):  # inf or NaN maps give None, not warnings
                shape, summary = _blockwise.summary(maps, position, call, what)
            entries.append({"name": info.path, **declared, "shape": list(shape), **_plain_all(summary)})
    return {"layers": entries}


def _plain_all(summary: dict) -> dict:
    return {name: None if value is None else _plain(value) for name, value in summary.items()}


def _check_square(shape: tuple, i: int) -> None:
    if shape[-1] != shape[-2]:
        raise ValueError(
            f"rollout(): layer {i} has {shape[-2]} queries and {shape[-1]} keys; rollout needs "
            "square self-attention maps (cross-attention cannot be chained through layers)"
        )


def _check_chainable(infos) -> None:
    """Rollout chains the self-attention of one stack, on tokens: what the capture declared must say so."""
    for i, info in enumerate(infos):
        require_tokens(info.layout, f"rollout(): layer {i} ({info.path!r})")
    cross = [info.path for info in infos if info.kind == "cross"]
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


def _check_patch_size(patch_size) -> None:
    if isinstance(patch_size, bool) or not isinstance(patch_size, numbers.Real) or not patch_size > 0:
        raise ValueError(
            f"mean_attention_distance(): patch_size must be a positive number, not {patch_size!r}"
        )


def _plain(x) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None
