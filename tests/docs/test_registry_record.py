"""The registry tests' record (tests/registry_record.py): written on request, compared otherwise."""

import json

import pytest
import registry_record
from registry_record import RegistryRecord

VERSIONS = {"timm": "1.0.31"}


def record(tmp_path, monkeypatch, cases):
    monkeypatch.setattr(registry_record, "REGISTRY", tmp_path)
    found = RegistryRecord("timm")
    for case, finding in cases.items():
        found.add(case, finding)
    return found


def test_written_on_request_then_compared(tmp_path, monkeypatch):
    cases = {"vit": {"outcome": "captured", "maps": 2}, "resnet": {"outcome": "no attention"}}
    monkeypatch.setenv("VISUALIZER_WRITE_REGISTRY", "1")
    record(tmp_path, monkeypatch, cases).finish(2, VERSIONS)
    written = json.loads((tmp_path / "timm.json").read_text())
    assert written == {"versions": VERSIONS, "cases": dict(sorted(cases.items()))}

    monkeypatch.delenv("VISUALIZER_WRITE_REGISTRY")
    record(tmp_path, monkeypatch, cases).finish(2, VERSIONS)  # the same findings: passes
    changed = {**cases, "vit": {"outcome": "captured", "maps": 3}}
    with pytest.raises(AssertionError, match=r"cases \['vit'\]"):
        record(tmp_path, monkeypatch, changed).finish(2, VERSIONS)
    with pytest.raises(AssertionError, match="versions"):
        record(tmp_path, monkeypatch, cases).finish(2, {"timm": "1.0.32"})
    slow = {**cases, "vit": {"outcome": "slow", "reason": "a forward takes over 10 s"}}
    record(tmp_path, monkeypatch, slow).finish(2, VERSIONS)  # a time cap says nothing: not compared
    timed_out = {**cases, "vit": {"outcome": "skipped", "reason": "cannot be built (TimeoutError)"}}
    record(tmp_path, monkeypatch, timed_out).finish(2, VERSIONS)  # nor does a timeout while building
    record(tmp_path, monkeypatch, {"vit": changed["vit"]}).finish(2, VERSIONS)  # partial run: nothing


def test_a_missing_file_says_how_to_write_it(tmp_path, monkeypatch):
    monkeypatch.delenv("VISUALIZER_WRITE_REGISTRY", raising=False)
    with pytest.raises(AssertionError, match="VISUALIZER_WRITE_REGISTRY=1"):
        record(tmp_path, monkeypatch, {"vit": {"outcome": "captured"}}).finish(1, VERSIONS)
