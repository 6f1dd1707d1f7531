"""The files one CLI run writes: one distinct folder per input, each file atomic, nothing partial left.

>>> outputs = Outputs(Path("figs"))
>>> outputs.check()                            # before any model loads: --out must be writable
>>> folder = outputs.folder("猫")              # figs/猫 (reserved, created on the first write)
>>> outputs.figure(folder, "head.png", fig)   # via visualizer._files: whole, or not at all
>>> outputs.done(folder)
>>> outputs.discard()                          # on an error: what unfinished inputs wrote goes

Folder names keep readable (Unicode) names and only replace what is unsafe in a file name;
two inputs never share a folder (``a.png`` and ``a.jpg``, or one name from two folders, get
``a-png`` and ``a-jpg``, then ``-2``, ``-3``), and no file this run wrote is written again.
"""

from __future__ import annotations

import json
import os
import re
import unicodedata
from pathlib import Path

from visualizer import _files
from visualizer._errors import UsageError

__all__ = ["Outputs", "safe_name"]

_UNSAFE = re.compile(r'[\x00-\x1f\x7f<>:"/\\|?*]+')
_RESERVED = {
    "CON",
    "PRN",
    "AUX",
    "NUL",
    *(f"COM{i}" for i in range(1, 10)),
    *(f"LPT{i}" for i in range(1, 10)),
}
MAX_SIDE = 4000  # pixels: a figure larger than this is saved at a lower resolution
MAX_NAME_BYTES = 150  # file systems allow 255 bytes a name; leave room for suffixes


def safe_name(name: str) -> str:
    """``name`` as a folder name: NFC, unsafe characters (``/ \\ : * ? " < > |``, control) -> ``-``.

    >>> safe_name("猫")
    '猫'
    >>> safe_name("a/b:c")
    'a-b-c'
    """
    safe = _UNSAFE.sub("-", unicodedata.normalize("NFC", name)).strip(" .-")
    while len(safe.encode("utf-8")) > MAX_NAME_BYTES:
        safe = safe[:-1]
    safe = safe.rstrip(" .-")
    if safe.split(".")[0].upper() in _RESERVED:  # names Windows will not create
        safe = f"{safe}-"
    return safe or "input"


def _describe(exc: OSError) -> str:
    return exc.strerror or str(exc)


class Outputs:
    """Every file of one run under ``out``; see the module docstring."""

    def __init__(self, out: Path) -> None:
        self.out = Path(out)
        self.written: list[Path] = []
        self._names: set[str] = set()
        self._created: list[Path] = []
        self._open: dict[Path, list[Path]] = {}

    def check(self) -> None:
        """UsageError unless ``out`` is (or can become) a writable folder; creates nothing."""
        existing = self.out
        while not existing.exists() and existing != existing.parent:
            if existing.is_symlink():  # a dangling link
                break
            existing = existing.parent
        if not existing.is_dir():
            where = "" if existing == self.out else f" ({existing} is a file)"
            raise UsageError(f"--out {self.out} is not a folder{where}; give a folder to write into")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise UsageError(f"--out {self.out}: {existing} is not writable; give a folder you can write to")

    def folder(self, name: str, alternative: str | None = None) -> Path:
        """A folder under ``out`` no other input of this run has: ``name``, ``alternative``, or ``-N``."""
        candidates = [safe_name(name)] + ([safe_name(alternative)] if alternative else [])
        chosen = next((c for c in candidates if c.casefold() not in self._names), None)
        number = 2
        while chosen is None:
            candidate = f"{candidates[-1]}-{number}"
            chosen = candidate if candidate.casefold() not in self._names else None
            number += 1
        self._names.add(chosen.casefold())
        folder = self.out / chosen
        self._open[folder] = []
        return folder

    def figure(self, folder: Path, name: str, figure, dpi: float = 110) -> Path:
        """Save a matplotlib figure as PNG (atomically, at most ~MAX_SIDE pixels a side) and close it."""
        width, height = figure.get_size_inches()
        dpi = min(dpi, 0.95 * MAX_SIDE / max(width, height, 1e-6))
        try:
            with self._target(folder, name) as (path, temporary):
                figure.savefig(temporary, format="png", dpi=dpi, bbox_inches="tight")
        finally:
            _close(figure)
        return path

    def text(self, folder: Path, name: str, text: str) -> Path:
        with self._target(folder, name) as (path, temporary):
            temporary.write_bytes(text.encode("utf-8"))
        return path

    def json(self, folder: Path, name: str, value) -> Path:
        return self.text(folder, name, json.dumps(value, indent=2, ensure_ascii=False) + "\n")

    def done(self, folder: Path) -> None:
        """``folder`` is complete: kept even if a later input fails."""
        self._open.pop(folder, None)

    def discard(self) -> list[Path]:
        """Remove what unfinished inputs wrote, and the folders this run created that are now empty."""
        removed = []
        for files in self._open.values():
            for path in files:
                path.unlink(missing_ok=True)
                self.written.remove(path)
                removed.append(path)
        self._open.clear()
        for folder in reversed(self._created):
            try:
                folder.rmdir()  # only if empty: a complete input's folder stays
            except OSError:
                pass
        return removed

    def _target(self, folder: Path, name: str):
        path = folder / name
        if path in self.written:  # a bug: two outputs of one run with one name
            raise RuntimeError(f"this run already wrote {path}")
        self._make(folder)
        return _Writing(self, folder, path)

    def _make(self, folder: Path) -> None:
        missing = []
        parent = folder
        while not parent.exists() and parent != parent.parent:
            missing.append(parent)
            parent = parent.parent
        for path in reversed(missing):
            try:
                path.mkdir()
            except FileExistsError:
                if not path.is_dir():
                    raise UsageError(f"cannot create the folder {path}: a file has that name") from None
                continue
            except OSError as exc:
                raise UsageError(f"cannot create the folder {path}: {_describe(exc)}") from None
            self._created.append(path)
        if not folder.is_dir():
            raise UsageError(f"cannot write into {folder}: it is a file, not a folder")


class _Writing:
    """``with`` one atomic write to ``path``: (path, temporary); an OSError becomes a UsageError."""

    def __init__(self, outputs: Outputs, folder: Path, path: Path) -> None:
        self.outputs, self.folder, self.path = outputs, folder, path

    def __enter__(self):
        try:
            self._replacing = _files.replacing(self.path)
            temporary = self._replacing.__enter__()
        except OSError as exc:
            raise UsageError(f"cannot write {self.path}: {_describe(exc)}") from None
        return self.path, temporary

    def __exit__(self, kind, exc, tb) -> bool:
        try:
            self._replacing.__exit__(kind, exc, tb)
        except OSError as error:
            raise UsageError(f"cannot write {self.path}: {_describe(error)}") from None
        if kind is None:
            self.outputs.written.append(self.path)
            self.outputs._open.setdefault(self.folder, []).append(self.path)
            return False
        if isinstance(exc, OSError):
            raise UsageError(f"cannot write {self.path}: {_describe(exc)}") from None
        return False


def _close(figure) -> None:
    try:
        import matplotlib.pyplot as plt

        plt.close(figure)
    except Exception:  # closing is a courtesy; a figure not in pyplot needs none
        pass
