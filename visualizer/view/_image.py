"""The picture under an image view: validated as RGB uint8, embedded as a base64 PNG.

>>> rgb = as_rgb_uint8(image, "image")       # (H, W, 3) uint8 from uint8 or float in [0, 1]
>>> png_base64(rgb)[:12]
'iVBORw0KGgoA'

The PNG is written here with zlib and numpy (Paeth filter on every row), so no imaging
library is needed and the output is the same everywhere.
"""

from __future__ import annotations

import base64
import struct
import zlib

from visualizer.view._maps import as_numpy

__all__ = ["as_rgb_uint8", "png_base64"]


def as_rgb_uint8(image, argument: str = "image"):
    """An (H, W, 3) uint8 array from (H, W, 3|4) or (H, W), uint8 or float in [0, 1], numpy, torch or PIL."""
    import numpy as np

    array = as_numpy(image, argument)
    if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[-1] not in (1, 3, 4):
        raise ValueError(f"{argument} looks channel-first, shape {tuple(array.shape)}; pass "
                         "(height, width, 3), e.g. image.permute(1, 2, 0) for a torch tensor")
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] not in (3, 4):
        raise ValueError(f"{argument} must be (height, width, 3) RGB, (height, width, 4) RGBA or "
                         f"(height, width) gray; got shape {tuple(array.shape)}")
    array = array[..., :3]
    if 0 in array.shape:
        raise ValueError(f"{argument} is empty: shape {tuple(array.shape)}")
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise ValueError(f"{argument} holds NaN or infinite values")
        low, high = float(array.min()), float(array.max())
        if low < 0 or high > 1:
            raise ValueError(f"a float {argument} must lie in [0, 1]; got values from {low:.3g} to "
                             f"{high:.3g}. Undo the normalisation (x * std + mean), or pass uint8 0..255.")
        return np.rint(array * 255).astype(np.uint8)
    if array.dtype != np.uint8:
        low, high = int(array.min()), int(array.max())
        if low < 0 or high > 255:
            raise ValueError(f"an integer {argument} must lie in 0..255; got values from {low} to {high}")
    return array.astype(np.uint8)


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
