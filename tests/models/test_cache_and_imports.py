"""Where converted weights are cached, how they are written, and that importing costs nothing heavy."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from visualizer.models._cache import cache_dir, read_arrays, write_arrays


@pytest.mark.parametrize(
    ("visualizer_cache", "xdg", "expected"),
    [
        ("/data/vc", "/xdg", Path("/data/vc")),
        ("", "/xdg", Path("/xdg/transformer-visualizer")),  # empty counts as unset
        (None, "/xdg", Path("/xdg/transformer-visualizer")),
        (None, "", Path("~/.cache/transformer-visualizer").expanduser()),
        (None, None, Path("~/.cache/transformer-visualizer").expanduser()),
        ("~/models", None, Path("~/models").expanduser()),
    ],
)
def test_cache_dir_precedence(monkeypatch, visualizer_cache, xdg, expected):
    for name, value in (("VISUALIZER_CACHE", visualizer_cache), ("XDG_CACHE_HOME", xdg)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    assert cache_dir() == expected


def test_write_arrays_round_trips_and_leaves_no_temporary_file(tmp_path):
    arrays = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.ones(4, np.float32)}
    path = tmp_path / "deep" / "er" / "weights.safetensors"  # missing folders are made
    write_arrays(path, arrays, {"source_sha256": "abc"})
    loaded, metadata = read_arrays(path)
    assert metadata == {"source_sha256": "abc"}
    assert loaded.keys() == arrays.keys() and all(np.array_equal(loaded[k], arrays[k]) for k in arrays)
    assert all(array.flags.writeable for array in loaded.values())
    assert [p.name for p in path.parent.iterdir()] == ["weights.safetensors"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    import safetensors.numpy

    path = tmp_path / "weights.safetensors"
    write_arrays(path, {"a": np.zeros(2, np.float32)}, {})

    def disk_full(arrays, filename, metadata=None):
        Path(filename).write_bytes(b"half a file")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(safetensors.numpy, "save_file", disk_full)
    with pytest.raises(OSError, match="No space left"):
        write_arrays(path, {"a": np.ones(2, np.float32)}, {})
    assert np.array_equal(read_arrays(path)[0]["a"], np.zeros(2, np.float32))
    assert [p.name for p in tmp_path.iterdir()] == ["weights.safetensors"]


def test_importing_visualizer_models_imports_no_framework():
    code = (
        "import sys, visualizer.models\n"
        "heavy = ['torch', 'timm', 'transformers', 'onnx', 'numpy', 'PIL', 'safetensors', 'matplotlib',"
        " 'skimage']\n"
        "print([name for name in heavy if name in sys.modules])\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
