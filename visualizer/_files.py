"""Every file the project writes is written atomically: whole, or not at all.

>>> write_text(path, html)                      # encodes first: an encoding error writes nothing
>>> with replacing(path) as temporary:          # for writers that take a path (savefig)
...     figure.savefig(temporary)

The data go to a temporary file in the target's folder, which is flushed to disk and then
renamed over the target (``os.replace`` is atomic on POSIX and Windows), so a reader, an
interruption or a crash never meets a partial file, and an old file survives a failed write.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["replacing", "write_bytes", "write_text"]


@contextlib.contextmanager
def replacing(path: str | os.PathLike, *, mode: int = 0o644) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; it replaces ``path`` when the block ends
    without an exception, and is removed otherwise (the old file stays as it was)."""
    target = Path(path)
    handle, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        with open(temporary, "rb+") as written:  # what the writer closed, on disk before the rename
            os.fsync(written.fileno())
        # mkstemp makes the file private (0600); what we write is meant to be shared.
        os.chmod(temporary, mode)
        os.replace(temporary, target)
    finally:
        if temporary.exists():
            temporary.unlink()


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path."""
    with replacing(path) as temporary:
        temporary.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str, *, encoding: str = "utf-8") -> Path:
    """Encode ``text`` (an encoding error raises before anything is written), then write it atomically."""
    return write_bytes(path, text.encode(encoding))
