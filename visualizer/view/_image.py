"""The picture under an image view, embedded as a base64 PNG.

>>> rgb = as_rgb_uint8(image, "image")       # visualizer._arrays: (H, W, 3) uint8
>>> png_base64(rgb)[:12]
'iVBORw0KGgoA'

The PNG is written here with zlib and numpy (Paeth filter on every row), so no imaging
library is needed and the output is the same everywhere.
"""

from __future__ import annotations

import base64
import struct
import zlib

__all__ = ["png_base64"]


def png_base64(rgb) -> str:
    """A base64 PNG of an (H, W, 3) uint8 array."""
    import numpy as np

    height, width, _ = rgb.shape
    pixels = rgb.astype(np.int16)
    # Paeth predicts each byte from its left (a), upper (b) and upper-left (c) neighbours.
    a = np.zeros_like(pixels)
    a[:, 1:] = pixels[:, :-1]
    b = np.zeros_like(pixels)
    b[1:] = pixels[:-1]
    c = np.zeros_like(pixels)
    c[1:, 1:] = pixels[:-1, :-1]
    p = a + b - c
    pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
    predictor = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
    filtered = ((pixels - predictor) % 256).astype(np.uint8).reshape(height, width * 3)
    scanlines = np.concatenate([np.full((height, 1), 4, dtype=np.uint8), filtered], axis=1)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    data = zlib.compress(scanlines.tobytes(), 9)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
    return base64.b64encode(png).decode("ascii")
