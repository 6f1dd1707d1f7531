"""visualizer._files: a write is whole or absent, and an interrupted one leaves the old file intact."""

import os

import pytest

from visualizer._files import replacing, write_bytes, write_text


def test_a_write_replaces_the_file_whole(tmp_path):
    path = tmp_path / "out.txt"
    write_text(path, "old")
    assert write_text(path, "néw") == path and path.read_text(encoding="utf-8") == "néw"
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]  # no temporary left behind


def test_an_encoding_error_writes_nothing_and_keeps_the_old_file(tmp_path):
    path = tmp_path / "view.html"
    write_text(path, "old view")
    with pytest.raises(UnicodeEncodeError):
        write_text(path, "token \ud800")  # a lone surrogate
    assert path.read_text() == "old view" and len(list(tmp_path.iterdir())) == 1


def test_an_interrupted_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "figure.png"
    write_bytes(path, b"old")

    with pytest.raises(KeyboardInterrupt):
        with replacing(path) as temporary:
            temporary.write_bytes(b"half of the new")
            raise KeyboardInterrupt  # Ctrl-C in the middle of a write
    assert path.read_bytes() == b"old" and len(list(tmp_path.iterdir())) == 1


def test_a_missing_folder_is_an_error_not_a_silent_skip(tmp_path):
    with pytest.raises(FileNotFoundError):
        write_text(tmp_path / "nope" / "x.txt", "x")
    assert not (tmp_path / "nope").exists()


def test_writes_go_through_a_temporary_in_the_same_folder(tmp_path, monkeypatch):
    seen = []
    real = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: (seen.append((os.path.dirname(a), str(b))), real(a, b)))
    write_text(tmp_path / "a.json", "{}")
    assert seen == [(str(tmp_path), str(tmp_path / "a.json"))]
