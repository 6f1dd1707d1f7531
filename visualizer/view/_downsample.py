"""Long maps made small: means over blocks of tokens, from a whole map or from row blocks.

>>> small, steps = block_average(weights, 64)       # (heads, 4096, 4096) -> (heads, 64, 64)
>>> steps                                           # each cell: the mean of 64 x 64 weights
(64, 64)
>>> blocks = ((start, rows[0].numpy()) for start, rows in maps.row_blocks(0))  # batch item 0
>>> [(small, steps)] = block_means(blocks, 8, 4096, 4096, (64,))   # the same, one row block at a time

An axis of n tokens is cut into blocks of ``ceil(n / size)`` tokens; the last block may be
shorter and is averaged over the tokens it holds.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["block_average", "block_means"]


def block_average(weights, size: int):
    """``weights`` (..., queries, keys) averaged over blocks of ``ceil(n / size)`` tokens per axis.

    Returns ``(averaged, (query_block, key_block))``; the last block of an axis may be shorter,
    and is averaged over the tokens it holds. With ``size`` at least the axis length, a block
    is one token and the map comes back unchanged.
    """
    weights = np.asarray(weights, dtype=np.float32)
    queries, keys = weights.shape[-2:]
    step_q, step_k = math.ceil(queries / size), math.ceil(keys / size)
    out = weights
    for axis, step, length in ((-2, step_q, queries), (-1, step_k, keys)):
        if step > 1:
            starts = np.arange(0, length, step)
            counts = np.diff(np.append(starts, length)).astype(np.float32)
            shape = [1] * out.ndim
            shape[axis] = len(starts)
            out = np.add.reduceat(out, starts, axis=axis) / counts.reshape(shape)
    return out.astype(np.float32), (step_q, step_k)


def block_means(blocks, heads: int, queries: int, keys: int, sizes):
    """:func:`block_average` at each of ``sizes``, from ``(first row, (heads, rows, keys))`` row blocks.

    The blocks are reduced as they come: only the sums of the block means are kept.
    """
    plans = []
    for size in sizes:
        step_q, step_k = math.ceil(queries / size), math.ceil(keys / size)
        key_starts = np.arange(0, keys, step_k)
        total = np.zeros((heads, math.ceil(queries / step_q), len(key_starts)), dtype=np.float64)
        plans.append((step_q, step_k, key_starts, total))
    for start, block in blocks:
        bucket = np.arange(start, start + block.shape[1])
        for step_q, _, key_starts, total in plans:
            summed = np.add.reduceat(block, key_starts, axis=-1)
            rows = bucket // step_q
            firsts = np.concatenate([[0], np.flatnonzero(np.diff(rows)) + 1])
            total[:, rows[firsts]] += np.add.reduceat(summed, firsts, axis=1)
    results = []
    for step_q, step_k, key_starts, total in plans:
        count_q = np.diff(np.append(np.arange(0, queries, step_q), queries))
        count_k = np.diff(np.append(key_starts, keys))
        results.append(((total / np.outer(count_q, count_k)).astype(np.float32), (step_q, step_k)))
    return results
