"""Where a timm attention module sits: token attention, windows cut by its block, or a refusal.

>>> place("layers.0.blocks.1.attn", modules)       # a Swin block's WindowAttention
Placement(block=<SwinTransformerBlock>, windows=<function swin_windows>)
>>> swin_windows(block, (x,))                       # x: (batch, 10, 10, C), window 7, shift 3
Windows(window=(7, 7), grid=(2, 2), shift=(3, 3), tokens=(10, 10), shift_before_pad=True)

The windows are read per call from the block's input, as the block cuts them at run time:

- Swin v1, v2 and v2-cr (``SwinTransformerBlock``, ``SwinTransformerV2CrBlock``): input
  (batch, H, W, C); the block's ``window_size`` and ``shift_size`` (already clipped to the
  feature size by ``_calc_window_shift``); the grid rolled by ``-shift``, *then* padded
  bottom/right to whole windows (``shift_before_pad``);
- SAM ViT blocks with ``window_size > 0``: (batch, H, W, C), padded, no shift;
- MaxViT / MaxxViT partition blocks with ``partition_block``: (batch, H, W, C) channels-last
  or (batch, C, H, W), no padding, no shift. Grid partitions (dilated) are refused.

Refused by place: MobileViT's transformer (each pixel position of a patch attends across
patches), TNT's pixel-level ``attn_in``, windowed SAM2 Hiera blocks (windows cut after Q
pooling).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

from visualizer._structure import Windows

__all__ = ["Placement", "place"]


@dataclasses.dataclass(frozen=True)
class Placement:
    """A windowed module: the block whose forward pre-hook reads its input, and the layout of a call."""

    block: Any
    windows: Callable[[Any, tuple], Windows]


def _pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _cut(size, window, shift=(0, 0), shift_before_pad=False) -> Windows:
    rows, cols = size
    grid = (math.ceil(rows / window[0]), math.ceil(cols / window[1]))
    return Windows(
        window=window, grid=grid, shift=shift, tokens=(rows, cols), shift_before_pad=shift_before_pad
    )


def swin_windows(block, args) -> Windows:
    _, rows, cols, _ = args[0].shape
    return _cut((rows, cols), _pair(block.window_size), _pair(block.shift_size), shift_before_pad=True)


def sam_windows(block, args) -> Windows:
    _, rows, cols, _ = args[0].shape
    return _cut((rows, cols), _pair(block.window_size))


def partition_windows(block, args) -> Windows:
    shape = args[0].shape
    size = shape[2:4] if type(block).__name__ == "PartitionAttention2d" else shape[1:3]
    return _cut((int(size[0]), int(size[1])), _pair(block.partition_size))


_GRID = (
    "MaxViT grid attention: each partition is a dilated grid of tokens across the image, "
    "which the windows layout cannot declare"
)


def _named(module, module_name: str, *classes: str) -> bool:
    cls = type(module)
    return cls.__module__ == f"timm.models.{module_name}" and cls.__name__ in classes


def place(path: str, module, modules: dict[str, Any]) -> Placement | str | None:
    """A :class:`Placement` for windowed attention, a refusal reason, or None for token attention."""
    parts = path.split(".")
    parent = modules.get(".".join(parts[:-1])) if len(parts) > 1 else modules.get("")
    own = parts[-1]
    if parent is not None and getattr(parent, own, None) is module:
        if _named(parent, "swin_transformer", "SwinTransformerBlock") or _named(
            parent, "swin_transformer_v2", "SwinTransformerV2Block"
        ):
            return Placement(parent, swin_windows)
        if _named(parent, "swin_transformer_v2_cr", "SwinTransformerV2CrBlock"):
            return Placement(parent, swin_windows)
        if _named(parent, "vision_transformer_sam", "Block") and getattr(parent, "window_size", 0):
            return Placement(parent, sam_windows)
        if _named(parent, "maxxvit", "PartitionAttentionCl", "PartitionAttention2d"):
            if parent.partition_block:
                return Placement(parent, partition_windows)
            return _GRID
        if _named(parent, "maxxvit", "ParallelPartitionAttention"):
            return Placement(parent, partition_windows) if own == "attn_block" else _GRID
        if _named(parent, "tnt", "Block") and own == "attn_in":
            return "TNT's inner attention is between pixels inside each patch, not between tokens"
        if _named(parent, "hieradet_sam2", "MultiScaleBlock") and getattr(parent, "is_windowed", False):
            return "SAM2 Hiera windowed attention with query pooling: no window layout declared"
    for end in range(len(parts) - 1, -1, -1):
        ancestor = modules.get(".".join(parts[:end]))
        if _named(ancestor, "mobilevit", "MobileVitBlock"):
            return (
                "MobileViT attention runs across patches for each pixel position of a patch "
                "(batch x pixels per patch), a strided layout the maps cannot declare"
            )
    return None
