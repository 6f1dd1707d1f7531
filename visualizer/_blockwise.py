"""Measures of one captured layer, read a block of query rows at a time (for :mod:`visualizer.analysis`).

>>> row_entropy(maps, 3, None, "entropy()")                  # (batch, heads), as entropy(maps[3])
>>> strongest_pairs(maps, 3, None, 5, 0, None, "top_k_pairs()")

A rebuilt layer of an ``AttentionMaps`` (``maps.info(i).rebuilt``) is never built whole
here: ``maps.row_blocks`` gives ``ROWS`` query rows at a time, each converted to numpy as
:func:`visualizer._arrays.as_array` converts a map, and reduced before the next is built.
Every function gives what the same measure gives on the whole map, to float rounding (sums
are taken block by block).
"""

from __future__ import annotations

import numpy as np

from visualizer._arrays import as_array, image_geometry, require_square
from visualizer._lazy import BLOCK_ROWS

__all__ = [
    "ROWS",
    "check_probabilities",
    "layer_shape",
    "row_entropy",
    "strongest_pairs",
    "summary",
    "token_distance",
]

#: Query rows per block read (what one block holds: batch x heads x ROWS x keys).
ROWS = BLOCK_ROWS


def check_probabilities(a: np.ndarray, what: str) -> None:
    if np.isnan(a).any() or (a < 0).any():
        raise ValueError(
            f"{what} holds negative or NaN weights; pass attention probabilities (after the softmax)"
        )


def layer_shape(maps, key, call) -> tuple[int, ...]:
    """(batch, heads, queries, keys) of one layer, without building it."""
    return tuple(int(n) for n in maps.shape(key, call))


def _blocks(maps, key, call, what: str, heads=None):
    for start, block in maps.row_blocks(key, ROWS, heads=heads, call=call):
        yield start, as_array(block, what)


def row_entropy(maps, key, call, what: str) -> np.ndarray:
    """(batch, heads): the mean over queries of each row's entropy, in nats."""
    batch, heads, queries, _ = layer_shape(maps, key, call)
    total = np.zeros((batch, heads))
    for _, a in _blocks(maps, key, call, what):
        check_probabilities(a, what)
        plogp = a * np.log(np.where(a > 0, a, 1))
        total += plogp.sum(axis=-1, dtype=np.float64).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return -total / queries


def strongest_pairs(maps, key, call, k: int, item: int, head, what: str) -> list[tuple[int, int, float]]:
    """The ``k`` strongest (query, key, weight) of batch ``item``, head ``head`` or the mean of the heads.

    Each block keeps its own ``k`` strongest; ties keep row-major order, as a stable sort of
    the whole map would.
    """
    keys = layer_shape(maps, key, call)[3]
    weights, places = [], []
    for start, a in _blocks(maps, key, call, what, heads=None if head is None else [head]):
        a = a[item]
        a = a.mean(axis=0, dtype=np.float64) if head is None else a[0]
        if np.isnan(a).any():
            raise ValueError(f"{what} holds NaN weights")
        flat = a.ravel()
        order = np.argsort(-flat, kind="stable")[:k]
        weights.append(flat[order])
        places.append(order + start * keys)
    if not weights:
        return []
    weight, place = np.concatenate(weights), np.concatenate(places)
    order = np.lexsort((place, -weight))[:k]
    return [(int(place[i] // keys), int(place[i] % keys), float(weight[i])) for i in order]


def token_distance(
    maps, key, call, grid, prefix_tokens, patch_size: float, renormalize: bool, what: str, argument: str
) -> np.ndarray:
    """(batch, heads): the mean attention distance of one square tokens layer (see analysis);
    ``grid`` and ``prefix_tokens`` None take what the capture declared for the layer."""
    batch, heads, queries, keys = layer_shape(maps, key, call)
    require_square((queries, keys), what)
    declared = maps.layout(key, -1 if call is None else call)
    rows, cols, prefix = image_geometry(keys, grid, prefix_tokens, declared, what, argument)
    patches = np.arange(rows * cols)
    r, c = patches // cols, patches % cols
    total = np.zeros((batch, heads))
    counted = np.zeros((batch, heads), dtype=np.int64)
    for start, a in _blocks(maps, key, call, f"{what}: attn"):
        check_probabilities(a, f"{what}: attn")
        first = max(prefix - start, 0)  # the block's first patch row
        if first >= a.shape[2]:
            continue
        q = np.arange(start + first, start + a.shape[2]) - prefix
        distance = np.hypot(r[q, None] - r[None, :], c[q, None] - c[None, :]) * float(patch_size)
        weights = a[..., first:, prefix:].astype(np.float64)
        mass = weights.sum(axis=-1)
        if renormalize:
            weights = weights / np.where(mass > 0, mass, 1)[..., None]
        per_query = (weights * distance).sum(axis=-1)
        valid = mass > 0
        total += np.where(valid, per_query, 0).sum(axis=-1)
        counted += valid.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counted > 0, total / counted, np.nan)


def summary(maps, key, call, what: str) -> tuple[tuple[int, ...], dict]:
    """The shape, and mean, std, min, max and mean row entropy over every value of one layer's map.

    The standard deviation merges the blocks' means and squared deviations (Chan et al.),
    as stable as numpy's two passes over the whole map. ``entropy`` is None if any value
    is negative. Values are numpy floats, maybe inf or NaN.
    """
    shape = layer_shape(maps, key, call)
    count, mean, squares = 0, 0.0, 0.0
    low, high = np.inf, -np.inf
    plogp_total, negative = 0.0, False
    for _, a in _blocks(maps, key, call, what):
        n = a.size
        if n == 0:
            continue
        block_mean = a.mean(dtype=np.float64)
        block_squares = np.square(a - block_mean, dtype=np.float64).sum()
        delta = block_mean - mean
        merged = count + n
        mean = mean + delta * n / merged
        squares = squares + block_squares + delta * delta * count * n / merged
        count = merged
        low, high = np.minimum(low, a.min()), np.maximum(high, a.max())  # NaN wins, as in a.min()
        negative = negative or bool((a < 0).any())
        if not negative:
            plogp_total += (a * np.log(np.where(a > 0, a, 1))).sum(dtype=np.float64)
    row_count = shape[0] * shape[1] * shape[2]
    return shape, {
        "mean": mean,
        "std": np.sqrt(squares / count),
        "min": low,
        "max": high,
        "entropy": None if negative else -plogp_total / row_count,
    }
