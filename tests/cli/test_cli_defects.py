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


def cli(*args, cache, cwd=None, timeout=600, encoding="utf-8"):
    """``python -m visualizer *args``: the completed process (text output)."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "HF_HUB_OFFLINE": "1",
        "VISUALIZER_CACHE": str(cache),
        "PYTHONIOENCODING": encoding,
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
    assert files_under(out / "text-1") == [
        "faithfulness.png",
        "heads.png",
        "layers.png",
        "relevance.png",
        "stats.json",
        "tokens.png",
        "view.html",
    ]
    assert "Wrote 7 files" in result.stdout


@pytest.fixture(scope="module")
def pictures(tmp_path_factory):
    """Two small PNGs and a text file named like an image."""
    import numpy as np
    from PIL import Image

    folder = tmp_path_factory.mktemp("pictures")
    for i, name in enumerate(["one.png", "two.png"]):
        pixels = np.random.default_rng(i).integers(0, 255, (40, 48, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / name)
    (folder / "x.png").write_text("not an image", encoding="utf-8")
    return folder


def one_error_line(result, pattern: str) -> None:
    import re

    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if "error: " in line]
    assert len(errors) == 1 and re.search(pattern, errors[0]), result.stderr


def test_every_image_is_checked_before_the_model_loads(tmp_path, cache, pictures):
    out = tmp_path / "out"
    # An unknown model would be the error if the model loaded first; x.png is, before anything runs.
    result = cli(
        "vit", "--model", "no_such_model", pictures / "one.png", pictures / "x.png", "--out", out, cache=cache
    )
    one_error_line(result, r"x\.png is not an image file PIL can read")
    assert not out.exists()


@pytest.mark.parametrize(
    ("option", "pattern"),
    [
        (["--layers", "12"], r"--layers: layer 12 is out of range; there are 12 layers"),
        (["--heads", "6"], r"--heads: head 6 is out of range; there are 3 heads"),
        (["--layer", "20"], r"--layer: layer 20 is out of range; there are 12 layers"),
        (
            ["--size", "4096"],
            r"--size 4096: 65537 tokens a layer make \d+ GiB of attention maps \(12 layers x 3 heads",
        ),
    ],
)
def test_layer_and_head_options_fail_before_anything_is_written(option, pattern, tmp_path, cache, pictures):
    out = tmp_path / "out"
    result = cli(*VIT, pictures / "one.png", pictures / "two.png", *option, "--out", out, cache=cache)
    one_error_line(result, pattern)
    assert not out.exists()  # no empty folder left behind


def png_header_only(path: pathlib.Path, width: int, height: int) -> None:
    """A PNG that declares width x height (RGB) with one empty data chunk: PIL refuses it on opening."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    data = zlib.compress(b"")
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
    )


def test_a_decompression_bomb_is_one_line(tmp_path, cache, pictures):
    huge = tmp_path / "huge.png"
    png_header_only(huge, 20000, 20000)
    result = cli(*VIT, pictures / "one.png", huge, "--out", tmp_path / "out", cache=cache)
    one_error_line(result, r"huge\.png is too large to decode safely .*400000000 pixels.*downscale")
    assert not (tmp_path / "out").exists()


def test_an_output_folder_that_cannot_be_written_is_one_line(tmp_path, cache, pictures):
    afile = tmp_path / "afile"
    afile.write_text("x", encoding="utf-8")
    for out, pattern in [
        (afile, r"--out .*afile is not a folder"),
        (afile / "sub", r"--out .*sub is not a folder \(.*afile is a file\)"),
    ]:
        one_error_line(cli(*VIT, pictures / "one.png", "--out", out, cache=cache), pattern)
    # A folder on a file system that refuses writes even to root (sysfs): the error comes from
    # writing, after the model ran, and is still one line.
    if not pathlib.Path("/sys/kernel").is_dir():
        pytest.skip("no /sys/kernel here")
    result = cli(*VIT, pictures / "one.png", "--out", "/sys/kernel", cache=cache)
    one_error_line(result, r"cannot (create the folder|write) /sys/kernel/one")


def test_each_input_gets_its_own_folder_whatever_its_name(tmp_path, cache, pictures):
    import shutil

    names = ["猫.png", "犬.png", "a.png", "a.jpg", "sub/a.png", 'we:ird*"name.png']
    for name in names:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        shutil.copy(pictures / "one.png", tmp_path / name)
    out = tmp_path / "out"
    result = cli(*VIT, *(tmp_path / name for name in names), "--out", out, cache=cache)
    assert result.returncode == 0, result.stderr
    folders = sorted(p.name for p in out.iterdir())
    assert folders == sorted(["猫", "犬", "a-png", "a-jpg", "a-png-2", "we-ird-name"])
    assert all(len(files_under(out / folder)) == 10 for folder in folders)
    assert "Wrote 60 files" in result.stdout
    listed = [line for line in result.stdout.splitlines() if line.startswith("  ")]
    assert len(listed) == 6 and len(set(listed)) == 6  # one line per folder, none twice


def test_a_long_text_is_truncated_with_a_warning_and_capped_figures(tmp_path, cache):
    from PIL import Image

    words = "the cat sat on a mat because it was tired and then the dog ran".split()
    text = " ".join(words[i % len(words)] for i in range(700))
    out = tmp_path / "out"
    result = cli("bert", text, "--out", out, cache=cache)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "has 702 tokens; kept the first 512" in warnings[0], result.stderr
    stats = json.loads((out / "text-1" / "stats.json").read_text(encoding="utf-8"))
    assert (stats["tokens_total"], stats["tokens_kept"], stats["truncated"]) == (702, 512, True)
    assert len(stats["tokens"]) == 512 and text.startswith(stats["text"]) and len(stats["text"]) < len(text)
    assert stats["text"].split() == (words * 34)[:510]  # 510 words + [CLS] and [SEP]: 512 tokens
    for name in ("tokens.png", "heads.png", "layers.png"):
        with Image.open(out / "text-1" / name) as figure:
            assert max(figure.size) <= 4000, (name, figure.size)
    assert (out / "text-1" / "view.html").stat().st_size < 3_000_000


def test_a_file_that_is_not_a_checkpoint_is_one_line(tmp_path, cache, pictures):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"junk\n")
    result = cli(
        *VIT[:2], "vit_tiny_patch16_224", "--weights", junk, pictures / "one.png", cache=cache, cwd=tmp_path
    )
    one_error_line(result, r"could not read .*junk\.pth as a checkpoint for 'vit_tiny_patch16_224'")
    assert not (tmp_path / "visualizer-output").exists()


def test_a_unicode_name_on_an_ascii_console_is_escaped_not_a_traceback(tmp_path, cache, pictures):
    import shutil

    shutil.copy(pictures / "one.png", tmp_path / "猫.png")
    result = cli(*VIT, tmp_path / "猫.png", "--out", tmp_path / "out", cache=cache, encoding="ascii")
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert "\\u732b/" in result.stdout and (tmp_path / "out" / "猫" / "stats.json").is_file()
