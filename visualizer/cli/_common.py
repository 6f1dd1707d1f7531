"""What both CLI jobs share: the error for bad input, index lists, input checks, progress.

Output folders and files are :mod:`visualizer.cli._outputs`.

>>> check_indices([0, -1], 12, "layer", "--layers")
[0, 11]
>>> check_token_layers(maps, "--model swin_tiny_patch4_window7_224")   # UsageError: windows, not tokens
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from visualizer._errors import LayoutError, UsageError
from visualizer._structure import require_tokens
from visualizer._validate import index, indices

__all__ = [
    "UsageError",
    "check_index",
    "check_indices",
    "check_token_layers",
    "index_list",
    "check_image",
    "heads_of",
    "progress",
]


def index_list(text: str) -> list[int]:
    """``"3,7,-1"`` -> ``[3, 7, -1]`` (an argparse type)."""
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers such as 0,5,11, not {text!r}"
        ) from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one index")
    return values


def check_index(value: int, count: int, what: str, option: str) -> int:
    """``value`` made non-negative, or a UsageError naming the valid range (:mod:`visualizer._validate`)."""
    try:
        return index(value, count, option, what)
    except (IndexError, TypeError) as exc:
        raise UsageError(str(exc)) from None


def check_indices(values, count: int, what: str, option: str) -> list[int]:
    """Every index checked, in order; all of ``range(count)`` for None; a repeat is a UsageError."""
    try:
        return indices(values, count, option, what)
    except (IndexError, TypeError, ValueError) as exc:
        raise UsageError(str(exc)) from None


def check_token_layers(maps, model: str) -> None:
    """UsageError unless every captured layer of ``maps`` (or every LayerInfo given) has a tokens layout.

    The figures and views of the CLI are token-to-token maps; a windowed (Swin) or channel
    (XCiT) model is refused before anything is drawn, with the way out.
    """
    for info in getattr(maps, "infos", maps):  # AttentionMaps, or its .selected before a forward
        try:
            require_tokens(info.layout, f"{model}: attention layer {info.path!r}")
        except LayoutError as exc:
            raise UsageError(
                f"{exc} The command line draws token attention only (ViT, DeiT, DINOv2, BERT); for this "
                "model use the Python API."
            ) from None


def progress(items: list, description: str):
    """Items with a progress bar on stderr when there is more than one."""
    if len(items) < 2:
        return items
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm comes with the models extra
        return items
    return tqdm(items, desc=description, unit="input", file=sys.stderr, leave=False)


def check_image(path: Path) -> None:
    """UsageError unless ``path`` is an image file PIL can open and whose data verify.

    Cheap (headers and checksums, no decoding of the pixels), so every input is checked before
    a model loads: a bad file is one line before any work, not a traceback after some.
    """
    from PIL import Image, UnidentifiedImageError

    if not path.exists():
        raise UsageError(f"no such file: {path}")
    if path.is_dir():
        raise UsageError(f"{path} is a folder; give image files")
    try:
        with Image.open(path) as image:
            image.verify()
    except Image.DecompressionBombError as exc:
        raise UsageError(
            f"{path} is too large to decode safely ({exc}); downscale it, e.g. to 2000 px a side"
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise UsageError(f"{path} is not an image file PIL can read: {reason}") from None


def heads_of(model, infos) -> int | None:
    """The heads of the first attention layer, from its module (or the model's config); None if unknown."""
    for info in infos[:1]:
        try:
            module = model.get_submodule(info.path)
        except (AttributeError, TypeError):
            module = None
        for name in ("num_heads", "num_attention_heads", "n_heads"):
            value = getattr(module, name, None)
            if isinstance(value, int) and value > 0:
                return value
    value = getattr(getattr(model, "config", None), "num_attention_heads", None)
    return value if isinstance(value, int) and value > 0 else None
