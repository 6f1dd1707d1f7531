"""What both CLI jobs share: the error for bad input, index lists, output folders, progress."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from visualizer._errors import UsageError

__all__ = [
    "UsageError",
    "check_index",
    "check_indices",
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


def check_index(index: int, count: int, what: str, option: str) -> int:
    """``index`` made non-negative, or a UsageError naming the valid range."""
    if not -count <= index < count:
        raise UsageError(
            f"{option} {index} is out of range: the model has {count} {what}s, so valid {what}s are "
            f"0..{count - 1} (or -{count}..-1)"
        )
    return index % count


def check_indices(indices, count: int, what: str, option: str) -> list[int]:
    """Every index checked, duplicates dropped, order kept; all of ``range(count)`` for None."""
    if indices is None:
        return list(range(count))
    chosen = [check_index(index, count, what, option) for index in indices]
    return list(dict.fromkeys(chosen))


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
