"""The text view's compact payload: each row's strongest weights, and the rest binned.

>>> encoder = TopKEncoder(rows=4 * 8 * 4096, keys=4096, keep=24, bin_width=64)
>>> encoder.add(block, where)         # (n, keys) float32 weights; where: their n row numbers
>>> payload, meta = encoder.finish()
>>> meta["kept_mass"]                 # share of the attention mass held by the kept weights
0.973
>>> rows = decode_rows(payload, meta)  # (rows, keys) as the browser shows them

Why: a 4,096-token, 4-layer, 8-head map holds 537 M weights (2 GB as float32); one byte each
is still 537 MB. A reader of a long text looks at one row (or one column) at a time and
sees which tokens stand out, so each row keeps:

- its ``keep`` largest weights exactly placed: their key indices, and their values as 6-bit
  square-root codes relative to the row's largest weight (``L = 63``: the error of a weight
  w is at most ``sqrt(w * top) / L + top / (4 L**2)``, as in :mod:`visualizer.view._codec`,
  plus the float16 rounding of ``top``, 1/2048 of it);
- the rest of its mass as sums over bins of ``bin_width`` consecutive keys (6-bit square-root
  codes relative to the row's largest bin); the browser spreads a bin's sum evenly over the
  keys of the bin that are not among the kept weights (and, in a causal map, that the row
  can see).

Why 6 bits: at 4,096 tokens 8-bit codes cost a quarter more after deflate (the low bits are
noise to it), and a 6-bit code puts a weight within 1/63 of its row's maximum.

Layout (little-endian), rows in (layer, head, query) order, ``k = min(keep, keys)``,
``bins = ceil(keys / bin_width)``: the ``rows * k`` index gaps (each row's kept keys sorted
ascending; the first is the index itself, each next one the gap to the previous) as uint16
split in two byte planes, every high byte then every low byte (small gaps make a plane of
zeros, which deflate packs well); ``rows`` float16 row maxima; ``rows * k`` uint8 weight
codes; ``rows`` float16 bin maxima; ``rows * bins`` uint8 bin codes. The whole is
zlib-wrapped deflate, for the browser's ``DecompressionStream("deflate")``.
"""

from __future__ import annotations

import base64
import sys
import zlib

import numpy as np

__all__ = ["ENCODING", "LEVELS", "TopKEncoder", "decode_rows"]

ENCODING = "topk-bins"
LEVELS = 63
MAX_KEYS = 65536  # indices and gaps are uint16


class TopKEncoder:
    """Encodes rows block by block, so the maps are never held whole (see the module docstring)."""

    def __init__(self, rows: int, keys: int, keep: int, bin_width: int) -> None:
        if keys > MAX_KEYS:
            raise ValueError(
                f"the text view stores key indices in 16 bits: at most {MAX_KEYS} keys, not {keys}"
            )
        self.rows, self.keys = rows, keys
        self.k = min(keep, keys)
        self.bin_width = bin_width
        self.bins = -(-keys // bin_width)
        self._deltas = np.zeros((rows, self.k), dtype="<u2")
        self._top = np.zeros(rows, dtype="<f2")
        self._codes = np.zeros((rows, self.k), dtype=np.uint8)
        self._bin_top = np.zeros(rows, dtype="<f2")
        self._bin_codes = np.zeros((rows, self.bins), dtype=np.uint8)
        self._filled = 0
        self._mass = 0.0
        self._kept = 0.0

    def add(self, block, where) -> None:
        """Encode ``block``, (n, keys) float32 weights >= 0, as the rows numbered ``where`` (n ints)."""
        block = np.asarray(block, dtype=np.float32)
        rows = np.asarray(where, dtype=np.int64)
        count = block.shape[0]
        if rows.shape != (count,) or block.ndim != 2 or block.shape[1] != self.keys:
            raise ValueError(
                f"block {block.shape} with {rows.shape} row numbers does not fit ({self.rows}, {self.keys})"
            )
        k = self.k
        chosen = np.sort(_strongest(block, k), axis=1)
        weights = np.take_along_axis(block, chosen, axis=1)
        self._deltas[rows] = np.diff(chosen, axis=1, prepend=0)
        top = weights.max(axis=1).astype(np.float16)
        self._top[rows] = top
        self._codes[rows] = _codes(weights, top.astype(np.float32))
        rest = block.copy()
        np.put_along_axis(rest, chosen, 0.0, axis=1)
        padded = np.zeros((count, self.bins * self.bin_width), dtype=np.float32)
        padded[:, : self.keys] = rest
        binned = padded.reshape(count, self.bins, self.bin_width).sum(axis=2, dtype=np.float64)
        bin_top = binned.max(axis=1).astype(np.float16)
        self._bin_top[rows] = bin_top
        self._bin_codes[rows] = _codes(binned, bin_top.astype(np.float64))
        self._mass += float(block.sum(dtype=np.float64))
        self._kept += float(weights.sum(dtype=np.float64))
        self._filled += count

    def finish(self, level: int = 6) -> tuple[str, dict]:
        """``(base64 payload, meta)`` once every row has been added."""
        if self._filled != self.rows:
            raise ValueError(f"{self._filled} of {self.rows} rows were added")
        planes = [(self._deltas >> 8).astype(np.uint8), (self._deltas & 255).astype(np.uint8)]
        parts = (*planes, self._top, self._codes, self._bin_top, self._bin_codes)
        raw = b"".join(part.tobytes() for part in parts)
        payload = base64.b64encode(zlib.compress(raw, level)).decode("ascii")
        meta = {
            "encoding": ENCODING,
            "compression": "deflate",
            "rows": self.rows,
            "keys": self.keys,
            "keep": self.k,
            "bin_width": self.bin_width,
            "bins": self.bins,
            "kept_mass": self._kept / self._mass if self._mass > 0 else 1.0,
            "raw_bytes": len(raw),
        }
        return payload, meta


def _strongest(block, k: int):
    """The indices of the ``k`` largest weights of each row, in no order.

    torch.topk where torch is loaded already (a partial sort, on every core: 4 to 10 times
    numpy's argpartition, whose introselect is slowest on the near-uniform rows of a
    long causal map); torch is never imported for it."""
    keys = block.shape[1]
    if k >= keys:
        return np.broadcast_to(np.arange(keys), block.shape)
    torch = sys.modules.get("torch")
    if torch is not None:
        return torch.topk(torch.from_numpy(block), k, dim=1, sorted=False).indices.numpy()
    return np.argpartition(block, keys - k, axis=1)[:, keys - k :]


def _codes(values, top):
    safe = np.where(top > 0, top, 1.0)[:, None]
    return np.rint(np.sqrt(np.clip(values / safe, 0.0, 1.0)) * LEVELS).astype(np.uint8)


def decode_rows(payload: str, meta: dict, causal_rows=None):
    """The (rows, keys) float32 weights the browser shows, from :func:`TopKEncoder.finish`.

    ``causal_rows``: for a causal map, each row's query position (a row sees keys 0..query),
    so that a bin's sum is spread only over the keys the row can see, as the browser does.
    """
    if meta.get("encoding") != ENCODING or meta.get("compression") != "deflate":
        raise ValueError(f"unknown payload format {meta!r}; this version reads {ENCODING!r} with deflate")
    rows, keys, k, width, bins = (meta[name] for name in ("rows", "keys", "keep", "bin_width", "bins"))
    raw = zlib.decompress(base64.b64decode(payload))
    offset = 0

    def take(dtype, count):
        nonlocal offset
        array = np.frombuffer(raw, dtype=dtype, count=count, offset=offset)
        offset += array.nbytes
        return array

    high = take(np.uint8, rows * k).astype(np.int64)
    deltas = (high * 256 + take(np.uint8, rows * k)).reshape(rows, k)
    top = take("<f2", rows).astype(np.float32)
    codes = take(np.uint8, rows * k).reshape(rows, k)
    bin_top = take("<f2", rows).astype(np.float32)
    bin_codes = take(np.uint8, rows * bins).reshape(rows, bins)
    if offset != len(raw):
        raise ValueError(f"payload holds {len(raw)} bytes, but the meta describes {offset}")
    lookup = (np.arange(LEVELS + 1, dtype=np.float32) / LEVELS) ** 2
    chosen = np.cumsum(deltas, axis=1)
    sums = lookup[bin_codes] * bin_top[:, None]
    visible = np.ones((rows, keys), dtype=bool)
    if causal_rows is not None:
        visible = np.arange(keys)[None, :] <= np.asarray(causal_rows)[:, None]
    spread = visible.copy()
    np.put_along_axis(spread, chosen, False, axis=1)
    padded = np.zeros((rows, bins * width), dtype=np.float32)
    padded[:, :keys] = spread
    counts = padded.reshape(rows, bins, width).sum(axis=2)
    share = np.where(counts > 0, sums / np.where(counts > 0, counts, 1), 0.0)
    out = np.repeat(share, width, axis=1)[:, :keys] * spread
    np.put_along_axis(out, chosen, lookup[codes] * top[:, None], axis=1)
    return out.astype(np.float32)
