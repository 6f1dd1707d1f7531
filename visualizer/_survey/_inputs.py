"""What a survey reads: a folder of images, a text file, a list, any iterable or a DataLoader.

>>> source = open_source("photos/", kind=None)          # every image under photos/, recursively
>>> source = open_source("sentences.txt", kind=None)    # one text per line (blank lines left out)
>>> source = open_source("cat.jpg", kind=None)          # one image file (a file PIL opens)
>>> for batch in source.batches(prepare, rank=0, world=1, batch_size=8, start=0, workers=2):
...     batch.inputs, batch.queries_valid, batch.skipped

Inputs are numbered in the order given (a folder's files sorted by path) and rank ``r`` of
``world`` takes inputs ``r, r + world, ...`` (a DataLoader's batches likewise); ``start``
batches of that shard are passed over without decoding (for a list, a folder or a file) so a
resumed run counts nothing twice. Decoding (images: PIL and ``prepare``; texts: the tokenizer)
runs in ``workers`` DataLoader worker processes. A file that cannot be read is skipped: its
path and the reason come back in ``batch.skipped``, never dropped in silence.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Batch", "Source", "open_source"]


@dataclass
class Batch:
    """One batch: the model's ``inputs`` (a tensor, or a dict of keyword tensors), how many inputs it
    holds, the real queries of a padded text batch (None: all), and the files skipped from it."""

    inputs: object = None
    count: int = 0
    queries_valid: object = None
    skipped: list = field(default_factory=list)


@dataclass
class Source:
    """Inputs numbered in a fixed order: ``items`` (a sequence, random access), ``stream`` (an iterable),
    or ``loader`` (a DataLoader whose batches go to the model as they are)."""

    kind: str
    description: dict
    items: Sequence | None = None
    stream: Iterable | None = None
    loader: object = None

    def batches(self, prepare, rank: int, world: int, batch_size: int, start: int, workers: int = 0):
        """The batches of this rank's shard from batch ``start`` on; ``prepare(list) -> Batch`` decodes."""
        if self.loader is not None:
            yield from _loader_batches(self.loader, rank, world, start)
        elif self.items is not None:
            yield from _item_batches(self.items, prepare, rank, world, batch_size, start, workers)
        else:
            yield from _stream_batches(self.stream, prepare, rank, world, batch_size, start)


IMAGE_SUFFIXES = None  # every file is tried: anything PIL reads


def open_source(inputs, kind: str | None) -> Source:
    """A :class:`Source` for ``inputs``; ``kind`` is "images", "texts" or None (from the inputs)."""
    if kind not in (None, "images", "texts"):
        raise ValueError(f"survey(): kind must be 'images', 'texts' or None, not {kind!r}")
    if isinstance(inputs, (str, os.PathLike)):
        path = Path(inputs)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
            if not files:
                raise ValueError(
                    f"survey(): inputs: the folder {path} holds no files; give a folder of images"
                )
            return Source(
                kind or "images",
                {"kind": "images", "folder": str(path), "files": [str(p.relative_to(path)) for p in files]},
                items=[str(p) for p in files],
            )
        if path.is_file() and (kind == "images" or (kind is None and _opens_as_image(path))):
            return Source("images", {"kind": "images", "items": [str(path)]}, items=[str(path)])
        if path.is_file():
            with open(path, encoding="utf-8", errors="replace") as handle:
                texts = [line.strip() for line in handle if line.strip()]
            if not texts:
                raise ValueError(
                    f"survey(): inputs: {path} holds no text; give a file with one text per line"
                )
            return Source(
                kind or "texts", {"kind": "texts", "file": str(path), "lines": len(texts)}, items=texts
            )
        raise ValueError(f"survey(): inputs: no such file or folder: {path}")
    if _is_loader(inputs):
        kind = kind or "images"
        return Source(kind, {"kind": kind, "dataloader": type(inputs.dataset).__name__}, loader=inputs)
    if isinstance(inputs, (bytes, dict)) or not isinstance(inputs, Iterable):
        raise TypeError(
            "survey(): inputs must be a folder, a text file, a list or iterable of images or texts, or a "
            f"torch DataLoader, not {type(inputs).__name__}"
        )
    if isinstance(inputs, Sequence):
        if len(inputs) == 0:
            raise ValueError("survey(): inputs is empty; give at least one image or text")
        guessed = kind or (
            "texts" if isinstance(inputs[0], str) and not _is_image_path(inputs[0]) else "images"
        )
        return Source(guessed, {"kind": guessed, **_listed(inputs)}, items=inputs)
    kind = kind or "images"
    return Source(kind, {"kind": kind, "iterable": type(inputs).__name__}, stream=inputs)


def _opens_as_image(path: Path) -> bool:
    try:
        from PIL import Image

        with Image.open(path):
            return True
    except Exception:  # not an image (or no PIL): read as text
        return False


def _is_loader(inputs) -> bool:
    try:
        from torch.utils.data import DataLoader
    except ImportError:  # pragma: no cover - the survey needs torch
        return False
    return isinstance(inputs, DataLoader)


def _is_image_path(text: str) -> bool:
    return len(text) < 4096 and "\n" not in text and Path(text).is_file()


def _listed(items: Sequence) -> dict:
    if all(isinstance(item, (str, os.PathLike)) for item in items):
        return {"items": [str(item) for item in items]}
    return {"items": len(items)}


class _Shard:
    """The inputs of one rank, from position ``offset`` of that shard on (a torch Dataset)."""

    def __init__(self, items, rank: int, world: int, offset: int) -> None:
        self.items, self.rank, self.world, self.offset = items, rank, world, offset
        total = len(items)
        self.length = max(0, (total - rank + world - 1) // world - offset)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int):
        return self.items[self.rank + (self.offset + i) * self.world]


def _item_batches(items, prepare, rank, world, batch_size, start, workers):
    from torch.utils.data import DataLoader

    shard = _Shard(items, rank, world, start * batch_size)
    if len(shard) == 0:
        return
    loader = DataLoader(
        shard,
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        collate_fn=prepare,
        persistent_workers=False,
    )
    yield from loader


def _stream_batches(stream, prepare, rank, world, batch_size, start):
    chunk, seen = [], 0
    for position, item in enumerate(stream):
        if position % world != rank:
            continue
        chunk.append(item)
        if len(chunk) == batch_size:
            if seen >= start:
                yield prepare(chunk)
            seen += 1
            chunk = []
    if chunk and seen >= start:
        yield prepare(chunk)


def _loader_batches(loader, rank, world, start):
    seen = 0
    for position, batch in enumerate(loader):
        if position % world != rank:
            continue
        if seen >= start:
            yield _as_batch(batch)
        seen += 1


def _as_batch(batch) -> Batch:
    """A DataLoader's batch: a tensor of pixels, a dict of model inputs, or (inputs, labels...)."""
    if isinstance(batch, (tuple, list)):
        batch = batch[0]
    if hasattr(batch, "keys"):
        inputs = dict(batch)
        count = int(next(iter(inputs.values())).shape[0])
        return Batch(inputs, count, inputs.get("attention_mask"))
    return Batch(batch, int(batch.shape[0]))
