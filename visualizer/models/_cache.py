"""The user cache for converted weights: where it is, and atomic writes into it.

>>> cache_dir()                       # $VISUALIZER_CACHE, else $XDG_CACHE_HOME/transformer-visualizer
PosixPath('/home/me/.cache/transformer-visualizer')
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from visualizer._files import replacing

__all__ = ["cache_dir", "content_sha256", "read_arrays", "write_arrays"]

CACHE_ENV = "VISUALIZER_CACHE"


def cache_dir() -> Path:
    """The folder for converted weights: ``$VISUALIZER_CACHE`` if set, else
    ``$XDG_CACHE_HOME/transformer-visualizer``, else ``~/.cache/transformer-visualizer``.

    An empty variable counts as unset, as the XDG specification asks.
    """
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "transformer-visualizer"


def write_arrays(path: Path, arrays: dict, metadata: dict[str, str]) -> None:
    """Save numpy ``arrays`` to ``path`` as safetensors, atomically.

    The file is written under a temporary name in the same folder and renamed into place,
    so a reader (another process, or this one after a crash) sees either no file or a
    whole one, never a partial write.
    """
    from safetensors.numpy import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    # Readable by all (0644): a shared VISUALIZER_CACHE must be readable by the others who use it.
    with replacing(path) as temporary:
        save_file(arrays, str(temporary), metadata=metadata)


def read_arrays(path: Path) -> tuple[dict, dict[str, str]]:
    """Load ``(arrays, metadata)`` from a safetensors file written by :func:`write_arrays`.

    The arrays are writable copies, so torch can take them over without a copy of its own.
    Raises whatever safetensors raises on a damaged file; the caller decides what that means.
    """
    import numpy as np
    from safetensors import safe_open

    arrays = {}
    with safe_open(str(path), framework="numpy") as handle:
        metadata = dict(handle.metadata() or {})
        for key in handle.keys():
            arrays[key] = np.array(handle.get_tensor(key))
    return arrays, metadata


def content_sha256(arrays: dict) -> str:
    """sha256 over the tensors in name order: for each, a JSON line ``[name, dtype, shape, nbytes]``
    (dtype with its byte order, e.g. ``"<f4"``), then its bytes in C order."""
    import numpy as np

    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        header = [name, array.dtype.str, list(array.shape), array.nbytes]
        digest.update(json.dumps(header).encode() + b"\n")
        digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()
