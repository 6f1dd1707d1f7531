"""What both CLI jobs share: the error for bad input, index lists, output folders, progress.

>>> check_indices([0, -1], 12, "layer", "--layers")
[0, 11]
>>> check_token_layers(maps, "--model swin_tiny_patch4_window7_224")   # UsageError: windows, not tokens
"""

from __future__ import annotations

import argparse
import json
import re
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
    "output_folder",
    "progress",
    "write_json",
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
    """UsageError unless every captured layer of ``maps`` is declared with a tokens layout.

    The figures and views of the CLI are token-to-token maps; a windowed (Swin) or channel
    (XCiT) model is refused before anything is drawn, with the way out.
    """
    for info in maps.infos:
        try:
            require_tokens(info.layout, f"{model}: attention layer {info.path!r}")
        except LayoutError as exc:
            raise UsageError(
                f"{exc} The command line draws token attention only (ViT, DeiT, DINOv2, BERT); for this "
                "model use the Python API."
            ) from None


def output_folder(out: Path, name: str) -> Path:
    """``out/name`` made safe for a folder name, created."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")[:60] or "input"
    folder = out / safe
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create the output folder {folder}: {exc.strerror or exc}") from None
    return folder


def progress(items: list, description: str):
    """Items with a progress bar on stderr when there is more than one."""
    if len(items) < 2:
        return items
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm comes with the models extra
        return items
    return tqdm(items, desc=description, unit="input", file=sys.stderr, leave=False)


def write_json(path: Path, value) -> Path:
    path.write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")
    return path
