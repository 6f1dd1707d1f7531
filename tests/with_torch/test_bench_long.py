"""The long-sequence benchmark runs in quick mode and reports every variant, target and figure it promises.

Timings are not checked (no timed tests): only that each figure is there and positive, and
the bytes that do not depend on the machine (what the lazy capture keeps, the eager maps).
"""

import json
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
VARIANTS = 8
TARGETS = 4  # per length
LAYERS, HEADS, KV_HEADS, HEAD_DIM = 4, 8, 2, 32


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


def test_long_benchmark_quick_mode_reports_every_variant_target_and_model(tmp_path):
    results = tmp_path / "long.json"
    script = ROOT / "benchmarks" / "bench_long.py"
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
    assert "bench_long.py --quick --json" in command

    tables = _tables(done.stdout)
    per_length = [table for table in tables if len(table[0]) == 6 and table[0][0].startswith("sdpa forward")]
    assert len(per_length) == 2, done.stdout  # 256 and 512 tokens
    for rows in per_length:
        assert len(rows) == VARIANTS
        assert rows[0][1] == rows[0][2] == "1.00x"
        for label, medians, minimums, ms, peak, kept in rows:
            assert medians.split()[0].endswith("x") and float(minimums[:-1]) > 0, label
            assert float(ms) > 0 and int(peak) >= 0 and int(kept) >= 0, label
    targets = next(table for table in tables if len(table[0]) == 5)
    assert [row[0] for row in targets] == ["256"] * TARGETS + ["512"] * TARGETS
    assert all(row[4] == "met" or row[4].startswith("**missed** by ") for row in targets)
    models = next(table for table in tables if len(table[0]) == 6 and table[0][0].startswith("`"))
    assert [row[0] for row in models] == ["`dinov2-b1`"]

    written = json.loads(results.read_text())
    assert list(written["lengths"]) == ["256", "512"]
    for length, result in written["lengths"].items():
        n = int(length)
        assert result["shapes"] == {
            "query": [1, HEADS, n, HEAD_DIM],
            "key": [1, KV_HEADS, n, HEAD_DIM],
            "causal": True,
        }
        seconds = result["timing"]["seconds"]
        assert len(seconds) == VARIANTS and all(len(s) == 1 and min(s) > 0 for s in seconds.values())
        memory = result["memory"]
        assert len(memory) == VARIANTS and all(m["peak_source"] == "VmHWM" for m in memory.values())
        # What the lazy capture keeps: each layer's queries and its keys, once per key head.
        assert memory["capture_lazy"]["maps_bytes"] == LAYERS * n * (HEADS + KV_HEADS) * HEAD_DIM * 4
        assert memory["capture_last"]["maps_bytes"] == n * (HEADS + KV_HEADS) * HEAD_DIM * 4
        assert memory["capture_eager"]["maps_bytes"] == LAYERS * HEADS * n * n * 4
        assert memory["rebuild_layer"]["maps_bytes"] == HEADS * n * n * 4
        assert memory["rebuild_rows"]["maps_bytes"] == HEADS * 256 * n * 4
    assert len(written["targets"]) == 2 * TARGETS
    model = written["models"]["dinov2-b1"]
    assert set(model["seconds"]) == {"baseline", "lazy", "eager"} and model["limit"] == 1.05
