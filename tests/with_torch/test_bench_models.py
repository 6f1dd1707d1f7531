"""The end-to-end model benchmark runs in quick mode, measures every variant and checks every capture."""

import json
import pathlib
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

ROOT = pathlib.Path(__file__).resolve().parents[2]
VARIANTS = 7


def _tables(stdout: str) -> list[list[list[str]]]:
    """Every markdown table in ``stdout``: a list of rows, each a list of cells, header excluded."""
    tables, current = [], None
    for line in stdout.splitlines():
        if not line.startswith("| "):
            current = None
            continue
        if current is None:
            current = []
            tables.append(current)
        elif "---" not in line:
            current.append([cell.strip() for cell in line.strip("|").split("|")])
    return tables


def test_model_benchmark_quick_mode_times_every_variant_of_every_config(tmp_path):
    results = tmp_path / "models.json"
    script = ROOT / "benchmarks" / "bench_models.py"
    done = subprocess.run(
        [sys.executable, str(script), "--quick", "--json", str(results)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    command = next(line for line in done.stdout.splitlines() if line.startswith("- command: "))
    assert "bench_models.py --quick --json" in command

    timing = [table for table in _tables(done.stdout) if len(table[0]) == 4]
    assert len(timing) == 2, done.stdout  # DINOv2 batch 1 and MiniLM 128 tokens batch 1
    for rows in timing:
        assert len(rows) == VARIANTS
        labels = [row[0] for row in rows]
        assert "baseline" in labels[0] and labels[3] == "capture_attention"
        assert labels[6].startswith("anycapture 0.1.4")
        assert rows[0][1] == rows[0][2] == "1.00x"
        for label, medians, minimums, ms in rows:
            for ratio in (medians, minimums):
                assert ratio.endswith("x") and float(ratio[:-1]) > 0, f"{label}: {ratio}"
            assert float(ms) > 0, f"{label}: {ms}"

    written = json.loads(results.read_text())
    assert list(written["configs"]) == ["dinov2-b1", "minilm-128-b1"]
    for config in written["configs"].values():
        assert len(config["seconds"]) == VARIANTS
        assert all(len(times) == 2 and min(times) > 0 for times in config["seconds"].values())

    # One forward's maps: 12 layers of (1, 6, 257, 257) float32 for DINOv2 ViT-S/14 at 224 px.
    peak = written["peak_memory"]["dinov2-b1"]["capture_attention"]
    assert peak["maps_bytes"] == 12 * 6 * 257 * 257 * 4
    # The maps are made during the measured forward and kept, so its peak includes them (less a margin
    # for memory malloc_trim could not hand back before it).
    assert peak["peak_increase"] >= 0.9 * peak["maps_bytes"]

    loop = written["memory_loop"]
    assert loop["forwards"] == 20 and [n for n, _ in loop["samples"]] == list(range(0, 21, 2))


def test_the_check_before_timing_rejects_captures_that_miss_or_compute_something_else(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    from model_checks import BenchmarkError, check_variants
    from variant import Variant

    config = SimpleNamespace(id="tiny", layers=2, map_shape=(1, 2, 3, 3))
    output, good = torch.ones(1, 4), [torch.full((1, 2, 3, 3), 1 / 3)] * 2
    baseline = Variant("baseline", "baseline", lambda: output)

    def capture(maps, step=lambda: output):
        return Variant("get_local", "a capture", step, maps=lambda: maps)

    check_variants(config, [baseline, capture(good)])
    with pytest.raises(BenchmarkError, match="captured 0 maps, expected one per layer: 2"):
        check_variants(config, [baseline, capture([])])
    with pytest.raises(BenchmarkError, match=r"shapes \[\(1, 2, 3, 4\)\], expected \(1, 2, 3, 3\)"):
        check_variants(config, [baseline, capture([torch.zeros(1, 2, 3, 4)] * 2)])
    with pytest.raises(BenchmarkError, match="output differs from the baseline's"):
        check_variants(config, [baseline, capture(good, step=lambda: output + 1)])
    with pytest.raises(BenchmarkError, match="layer 0 map differs from get_local's"):
        other = Variant("hooks", "hooks", lambda: output, maps=lambda: [torch.zeros(1, 2, 3, 3)] * 2)
        check_variants(config, [baseline, capture(good), other])
