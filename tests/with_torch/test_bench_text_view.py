"""The text view benchmark runs in quick mode and reports every figure it promises.

Timings are not checked (no timed tests): only that each figure is there and positive, and
what does not depend on the machine (the file size, the kept mass) matches the JSON.
"""

import json
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "view"))

from view_browser import find_chromium  # noqa: E402


@pytest.mark.skipif(find_chromium() is None, reason="chromium is not installed")
def test_text_view_benchmark_quick_mode_reports_size_and_open_time(tmp_path):
    results = tmp_path / "text_view.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_text_view.py"), "--quick", "--json", str(results)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    assert "- command: python benchmarks/bench_text_view.py --quick --json" in done.stdout
    table = [line for line in done.stdout.splitlines() if line.startswith("| 0.02 |")]
    assert len(table) == 1, done.stdout
    cells = [cell.strip() for cell in table[0].strip("|").split("|")]
    data = json.loads(results.read_text())
    (view,) = data["views"]
    assert data["tokens"] == 256 and view["init"] == 0.02
    assert cells[1] == f"{100 * view['kept_mass']:.1f}%" and 0 < view["kept_mass"] < 1
    assert cells[2] == f"{view['mb']:.2f}" and 0 < view["mb"] < 1
    assert len(view["open_s"]) == 1 and view["open_median_s"] > 0 and view["redraw_ms"] >= 0
    assert "- target (init 0.02): under 10 MB and 3 s to open: " in done.stdout
