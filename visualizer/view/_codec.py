"""The embedded payload: one small integer code per attention weight, deflated, base64.

>>> payload, meta = encode_maps(stack.maps, exact_keys=1)   # (layers, heads, queries, keys) float32
>>> meta
{'shape': [12, 6, 257, 257], 'encoding': 'sqrt-rowmax', 'bits': 6, 'exact_keys': 1, 'compression': 'deflate'}
>>> back = decode_maps(payload, meta)                        # what the browser shows

Why square-root codes with a per-row scale: a softmax row over 257 tokens puts a few
weights near its maximum and most near 1/257. With one linear 0..1 scale, nearly every
weight would round to the same one or two codes. Each row is instead divided by its own
maximum and stored as ``round(L * sqrt(w / rowmax))`` with ``L = 2**bits - 1``, so small
weights keep their detail: the absolute error of a weight w is at most
``sqrt(w * rowmax) / L + rowmax / (4 L**2)`` (about rowmax / L at the top of the row).

``exact_keys``: the first keys of each row (a ViT's CLS and register tokens) are stored
as float32 and left out of the row maximum. They often take most of a row, and would
otherwise squash the patches, which the image view shows scaled to their own maximum,
into a handful of codes.

``bits``: 8 while the maps are small (up to 2**21 weights: any BERT-sized text), else 6,
which keeps a 12-layer ViT-S at 224 px at 3.4 to 3.7 MB; 6-bit codes put a weight within 1/63
of its row's maximum, 4 of the image view's 255 colour levels at worst.

Layout (little-endian, as every browser is), rows in (layer, head, query) order:
``rows`` float32 scales, ``rows * exact_keys`` float32 weights, then ``rows * (keys -
exact_keys)`` uint8 codes. The whole is zlib-wrapped deflate, which the browser's built-in
``DecompressionStream("deflate")`` undoes.
"""

from __future__ import annotations

import base64
import zlib

__all__ = ["ENCODING", "choose_bits", "decode_maps", "encode_maps", "max_error"]

ENCODING = "sqrt-rowmax"
SMALL = 2**21  # weights up to which 8-bit codes are used


def choose_bits(count: int) -> int:
    """Code width for maps of ``count`` weights: 8 bits for small maps, 6 for large ones."""
    return 8 if count <= SMALL else 6


def encode_maps(maps, *, exact_keys: int = 0, bits: int | None = None, level: int = 6) -> tuple[str, dict]:
    """``(base64 payload, meta)`` for a (layers, heads, queries, keys) array of weights >= 0."""
    import numpy as np

    maps = np.asarray(maps, dtype=np.float32)
    keys = maps.shape[-1]
    if not 0 <= exact_keys < keys:
        raise ValueError(f"exact_keys must be from 0 to {keys - 1}; got {exact_keys}")
    bits = choose_bits(maps.size) if bits is None else bits
    if bits not in range(2, 9):
        raise ValueError(f"bits must be from 2 to 8; got {bits}")
    levels = 2**bits - 1
    rows = maps.reshape(-1, keys)
    exact, coded = rows[:, :exact_keys], rows[:, exact_keys:]
    scale = coded.max(axis=1)
    # An all-zero row (a fully masked query) keeps scale 0 and codes 0.
    safe = np.where(scale > 0, scale, 1.0).astype(np.float32)
    codes = np.rint(np.sqrt(coded / safe[:, None]) * levels).astype(np.uint8)
    raw = scale.astype("<f4").tobytes() + exact.astype("<f4").tobytes() + codes.tobytes()
    payload = base64.b64encode(zlib.compress(raw, level)).decode("ascii")
    meta = {
        "shape": list(maps.shape),
        "encoding": ENCODING,
        "bits": bits,
        "exact_keys": exact_keys,
        "compression": "deflate",
    }
    return payload, meta


def decode_maps(payload: str, meta: dict):
    """The (layers, heads, queries, keys) float32 array from :func:`encode_maps`, as the browser sees it."""
    import numpy as np

    if meta.get("encoding") != ENCODING or meta.get("compression") != "deflate":
        raise ValueError(f"unknown payload format {meta!r}; this version reads {ENCODING!r} with deflate")
    shape, bits, exact_keys = tuple(meta["shape"]), meta["bits"], meta["exact_keys"]
    rows, keys = int(np.prod(shape[:-1])), shape[-1]
    raw = zlib.decompress(base64.b64decode(payload))
    expected = rows * 4 * (1 + exact_keys) + rows * (keys - exact_keys)
    if len(raw) != expected:
        raise ValueError(f"payload holds {len(raw)} bytes, but shape {shape} needs {expected}")
    scale = np.frombuffer(raw, dtype="<f4", count=rows)
    exact = np.frombuffer(raw, dtype="<f4", count=rows * exact_keys, offset=rows * 4)
    codes = np.frombuffer(raw, dtype=np.uint8, offset=rows * 4 * (1 + exact_keys))
    exact, codes = exact.reshape(rows, exact_keys), codes.reshape(rows, keys - exact_keys)
    levels = 2**bits - 1
    lookup = (np.arange(levels + 1, dtype=np.float32) / levels) ** 2
    return np.concatenate([exact, lookup[codes] * scale[:, None]], axis=1).reshape(shape)


def max_error(maps, meta: dict):
    """The largest error :func:`decode_maps` may make on each weight of ``maps`` (same shape)."""
    import numpy as np

    maps = np.asarray(maps, dtype=np.float32)
    exact_keys, levels = meta["exact_keys"], 2 ** meta["bits"] - 1
    scale = maps[..., exact_keys:].max(axis=-1, keepdims=True)
    bound = np.sqrt(maps * scale) / levels + scale / (4 * levels**2)
    bound[..., :exact_keys] = 0
    # float32 arithmetic on either side adds a few ulps.
    return bound + 1e-6 * scale
