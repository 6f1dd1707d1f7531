"""visualizer.cli._outputs in-process: atomic files, distinct folders, nothing partial left on an error.

(The command-line behaviour is tested in a subprocess in test_cli_defects.py; this checks the
failure paths no real command can be made to hit on demand, e.g. a write that fails halfway.)
"""

import json

import matplotlib
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from visualizer._errors import UsageError
from visualizer.cli._outputs import Outputs, safe_name


def test_names_keep_unicode_and_lose_only_unsafe_characters():
    assert safe_name("猫") == "猫"
    assert safe_name('a/b\\c:d*e?f"g<h>i|j\x00k') == "a-b-c-d-e-f-g-h-i-j-k"
    assert safe_name("..hidden.") == "hidden"
    assert safe_name("CON") == "CON-" and safe_name("") == "input"
    assert len(safe_name("長" * 200).encode()) <= 150


def test_folders_are_distinct_and_made_only_when_written(tmp_path):
    outputs = Outputs(tmp_path / "out")
    first, second, third = (
        outputs.folder("a", "a-png"),
        outputs.folder("A", "a-jpg"),
        outputs.folder("a", "a-png"),
    )
    assert [first.name, second.name, third.name] == ["a", "a-jpg", "a-png"]
    assert outputs.folder("a", "a-png").name == "a-png-2"
    assert not (tmp_path / "out").exists()
    outputs.json(first, "stats.json", {"猫": 1})
    assert json.loads((first / "stats.json").read_text(encoding="utf-8")) == {"猫": 1}
    with pytest.raises(RuntimeError, match="already wrote"):
        outputs.text(first, "stats.json", "again")


def test_a_failed_write_leaves_no_partial_file_and_an_error_removes_the_unfinished_input(tmp_path):
    outputs = Outputs(tmp_path / "out")
    done = outputs.folder("done")
    outputs.text(done, "view.html", "<html></html>")
    outputs.done(done)
    unfinished = outputs.folder("unfinished")
    outputs.text(unfinished, "stats.json", "{}")
    figure = plt.figure()

    def broken_savefig(path, **kwargs):
        with open(path, "wb") as half:
            half.write(b"\x89PNG half")
        raise OSError(28, "No space left on device")

    figure.savefig = broken_savefig
    with pytest.raises(UsageError, match=r"cannot write .*head\.png: No space left on device"):
        outputs.figure(unfinished, "head.png", figure)
    assert sorted(p.name for p in unfinished.iterdir()) == ["stats.json"]  # no half file, no temporary
    assert outputs.discard() == [unfinished / "stats.json"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["done"]
    assert outputs.written == [done / "view.html"]


def test_figures_are_capped_at_4000_pixels_a_side(tmp_path):
    from PIL import Image

    outputs = Outputs(tmp_path)
    figure = plt.figure(figsize=(80, 20))
    figure.add_subplot().plot([0, 1])
    path = outputs.figure(outputs.folder("big"), "big.png", figure)
    with Image.open(path) as image:
        assert max(image.size) <= 4000 and image.size[0] > 3 * image.size[1]
