"""The demo (python -m visualizer) and the call benchmark run end to end."""

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_demo_runs_and_shows_both_captures():
    result = subprocess.run([sys.executable, "-m", "visualizer"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "2 maps (one per layer call), shape (1, 2, 6, 6)" in out
    assert "every row sums to 1: True" in out
    assert "default (fused attention): 0 maps recorded" in out and "fused_attn = False" in out
    assert "with fused_attn = False: 12 maps, each (1, 3, 197, 197)" in out


def test_call_benchmark_quick_mode_measures_every_variant():
    script = ROOT / "benchmarks" / "bench_call.py"
    result = subprocess.run(
        [sys.executable, str(script), "--quick"], capture_output=True, text=True, timeout=600, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ") and "---" not in line][1:]
    names = [row.split("|")[1].strip() for row in rows]
    assert names == [
        "plain call",
        "get_local, inactive",
        "get_local, active",
        "get_local, active, a list value (converted)",
        "get_local, active, two names (a tuple)",
        "original approach (tuple + wrapper)",
        "anycapture 0.1.4",
        "sys.monitoring PY_RETURN",
        "sys.setprofile",
        "sys.settrace",
    ]
    measured = {row.split("|")[1].strip(): row.split("|")[2].strip() for row in rows}
    needs_312 = {"sys.monitoring PY_RETURN"} if sys.version_info < (3, 12) else set()
    for name, ratio in measured.items():
        if name in needs_312:
            assert ratio == "n/a"
        else:
            assert ratio.endswith("x") and float(ratio[:-1]) > 0, f"{name}: {ratio}"
