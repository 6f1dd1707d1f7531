"""What the registry-wide tests found, kept in ``docs/registry/*.json`` for the docs' model matrix.

>>> record = RegistryRecord("timm")
>>> record.add("vision_transformer", {"model": "vit_tiny_patch16_224", "outcome": "captured"})
>>> record.finish(expected=len(FAMILIES))  # at the end of the module: write or compare

A complete run (every case of the file ran) compares its findings with the committed file and
fails on a difference, naming the cases; ``VISUALIZER_WRITE_REGISTRY=1`` writes the file instead.
A partial run (``-k``, a single case) compares nothing, and a case whose finding depends on the
machine's speed (outcome ``"slow"``: it hit the test's time cap; or a ``TimeoutError`` while its
tiny model was built or run) is not compared. The docs build reads these files, so
the supported-model matrix is what the tests last found, never written by hand.
"""

from __future__ import annotations

import json
import os
import pathlib

__all__ = ["REGISTRY", "SLOW", "RegistryRecord"]

REGISTRY = pathlib.Path(__file__).resolve().parents[1] / "docs" / "registry"
#: The outcome of a case skipped for the time it took: it says nothing about the capture.
SLOW = "slow"


def _timed(record: dict, case: str) -> bool:
    """Whether the case's finding depends on the machine's speed: it hit the test's time cap
    (``"slow"``), or building or running its tiny model hit a timeout (``TimeoutError``)."""
    finding = record["cases"].get(case, {})
    return finding.get("outcome") == SLOW or "TimeoutError" in str(finding.get("reason", ""))


class RegistryRecord:
    """One registry test's findings: ``{case: {"outcome": ..., ...}}``, in a JSON file named ``name``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.path = REGISTRY / f"{name}.json"  # (looked up now: tests may point it elsewhere)
        self.cases: dict[str, dict] = {}

    def add(self, case: str, finding: dict) -> None:
        self.cases[case] = finding

    def finish(self, expected: int, versions: dict[str, str]) -> None:
        if len(self.cases) < expected:
            return  # a partial run: nothing to compare
        found = {"versions": versions, "cases": dict(sorted(self.cases.items()))}
        if os.environ.get("VISUALIZER_WRITE_REGISTRY") == "1":
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps(found, indent=1, sort_keys=True) + "\n", encoding="utf-8")
            return
        if not self.path.exists():
            raise AssertionError(
                f"{self.path} is missing: run this file with VISUALIZER_WRITE_REGISTRY=1 to write it"
            )
        committed = json.loads(self.path.read_text(encoding="utf-8"))
        changed = sorted(
            case
            for case in set(committed["cases"]) | set(found["cases"])
            if committed["cases"].get(case) != found["cases"].get(case)
            and not (_timed(committed, case) or _timed(found, case))
        )
        assert committed["versions"] == versions and not changed, (
            f"the registry test found something else than {self.path.name} records "
            f"(versions {committed['versions']} -> {versions}; cases {changed[:10]}): check the "
            "changes, then rerun with VISUALIZER_WRITE_REGISTRY=1 to update the docs' model matrix"
        )
