"""A survey's checkpoint: its counts so far and how many batches it has done, written atomically.

>>> path = checkpoint_path("run.ckpt", rank=1, world=2)        # run.rank1-of-2.ckpt
>>> save(path, fingerprint, position=12, tally=tally, skipped=[...])
>>> load(path, fingerprint)                                      # None when there is none yet

One file per rank (each counts its own shard). The file is JSON (floats written exactly, as
repr writes them) and replaced whole (:mod:`visualizer._files`), so an interruption at any
moment leaves the previous checkpoint intact. ``fingerprint`` names the inputs, model,
measures, batch size and number of processes; a checkpoint of another survey is refused,
since continuing it would mix two surveys' counts.
"""

from __future__ import annotations

import json
from pathlib import Path

from visualizer._files import write_text
from visualizer._survey._tally import Tally

__all__ = ["checkpoint_path", "load", "save"]

VERSION = 1


def checkpoint_path(path, rank: int, world: int) -> Path:
    path = Path(path)
    if world == 1:
        return path
    return path.with_name(f"{path.stem}.rank{rank}-of-{world}{path.suffix}")


def save(path: Path, fingerprint: dict, position: int, tally: Tally | None, skipped: list) -> None:
    state = {
        "version": VERSION,
        "fingerprint": fingerprint,
        "position": position,
        "tally": None if tally is None else tally.state(),
        "skipped": [list(item) for item in skipped],
    }
    write_text(path, json.dumps(state))


def load(path: Path, fingerprint: dict):
    """(position, tally or None, skipped) from ``path``, or None if it does not exist."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
        version = state["version"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(
            f"survey(): checkpoint {path} cannot be read ({exc}); delete it to start afresh"
        ) from None
    if version != VERSION:
        raise ValueError(f"survey(): checkpoint {path} has version {version}, not {VERSION}; delete it")
    if state["fingerprint"] != fingerprint:
        differ = sorted(k for k in fingerprint if state["fingerprint"].get(k) != fingerprint[k])
        raise ValueError(
            f"survey(): checkpoint {path} is of another survey (its {', '.join(differ)} differ); "
            "delete it, or pass another checkpoint path, to start this one afresh"
        )
    tally = None if state["tally"] is None else Tally.from_state(state["tally"])
    return state["position"], tally, [tuple(item) for item in state["skipped"]]
