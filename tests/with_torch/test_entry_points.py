"""The main job (python -m visualizer) and the call benchmark run end to end."""

import json
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_the_main_job_runs_offline_on_the_embedded_defaults(tmp_path):
    """python -m visualizer with no arguments: DINOv2 on the sample images, MiniLM on a sentence, and the
    induction demo generating from its example (trained once into the user cache)."""
    out = tmp_path / "out"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}  # nothing may need a hub
    result = subprocess.run(
        [sys.executable, "-m", "visualizer", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert f"Wrote 30 files under {out.resolve()}" in result.stdout
    for image in ("grace_hopper", "chelsea"):
        stats = json.loads((out / image / "stats.json").read_text())
        assert stats["model"].startswith("DINOv2 ViT-S/14") and stats["grid"] == [16, 16]
        assert len(stats["layers"]) == 12 and stats["layers"][0]["shape"] == [1, 6, 257, 257]
        for figure in ("head", "heads", "grids", "cls", "rollout", "distance"):
            assert (out / image / f"{figure}.png").stat().st_size > 20_000
    text = json.loads((out / "text-1" / "stats.json").read_text())
    assert text["tokens"][:3] == ["[CLS]", "the", "cat"] and len(text["layers"]) == 6
    lm = json.loads((out / "prompt-1" / "stats.json").read_text())
    # Whether the copy was finished is reported, not asserted (tests/cli/test_cli_lm.py checks the report).
    assert lm["generated_tokens"] == 6 and isinstance(lm["generated_matches_the_copy"], bool)
    assert 0 <= lm["example"]["held_out_exact_copy_rate"] <= 1 and lm["example"]["index"] >= 0
    assert lm["copy_accuracy"]["induction_heads_ablated"] < lm["copy_accuracy"]["clean"]
    # The one explained example: the demo's next token, every prompt token scored.
    assert lm["relevance"]["method"] == "attention_grad"
    assert len(lm["relevance"]["scores"]) == len(lm["relevance"]["tokens"]) == len(lm["tokens"]) - 6
    for name in (
        "tokens.png",
        "heads.png",
        "generation.png",
        "head_effects.png",
        "relevance.png",
        "faithfulness.png",
        "model_view.html",
        "text_view.html",
    ):
        assert (out / "prompt-1" / name).stat().st_size > 10_000
    assert "Traceback" not in result.stderr


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
