"""The command line run for real, in a subprocess: each defect of "Nothing lost, nothing silent" stays fixed.

Every test runs ``python -m visualizer ...`` with this checkout first on the path, offline, and
reads what it printed and wrote.
"""

import json
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
VIT = ["vit", "--model", "vit_tiny_patch16_224", "--random-weights", "--size", "32"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def cli(*args, cache, cwd=None, timeout=600):
    """``python -m visualizer *args``: the completed process (text output)."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "HF_HUB_OFFLINE": "1",
        "VISUALIZER_CACHE": str(cache),
        "PYTHONIOENCODING": "utf-8",
    }
    return subprocess.run(
        [sys.executable, "-m", "visualizer", *map(str, args)],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=env,
        cwd=cwd,
        timeout=timeout,
    )


def files_under(folder: pathlib.Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def test_bert_without_text_runs_on_the_default_sentence(tmp_path, cache):
    out = tmp_path / "out"
    result = cli("bert", "--out", out, cache=cache)
    assert result.returncode == 0, result.stderr
    stats = json.loads((out / "text-1" / "stats.json").read_text(encoding="utf-8"))
    assert stats["text"] == "The cat sat on the mat because it was tired."
    assert stats["tokens"][:4] == ["[CLS]", "the", "cat", "sat"]
    assert files_under(out / "text-1") == ["heads.png", "layers.png", "stats.json", "tokens.png", "view.html"]
    assert "Wrote 5 files" in result.stdout
