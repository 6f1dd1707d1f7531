"""How far the demos' asserted quantities move when training rounds differently.

Each demo is trained from scratch, one variant per fresh process, over several seeds, one and
two intra-op threads, ``torch.use_deterministic_algorithms(True)`` and a float64 reference
(``torch.set_default_dtype(torch.float64)``). For every quantity the tests assert, the table
gives the bar the tests set, the worst and best value over the variants and the margin
(worst value minus the bar, or bar minus worst for an upper bound). A new machine trains
other weights (other processor, other rounding): the margins are what that may move.

    .venv/bin/python benchmarks/demo_spread.py                   # both demos, every variant (about 12 min)
    .venv/bin/python benchmarks/demo_spread.py --demo copy       # the copy task only (about a minute)
    .venv/bin/python benchmarks/demo_spread.py --seeds 0 1 --jobs 2

Training runs outside the user cache (``train_induction``, not ``load_induction_demo``), so
nothing cached is read or written. Results go to stdout as Markdown and to
``benchmarks/results/demo_spread.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent

# name: (bar, "min" when the value must be at least the bar, "max" when at most), as the tests assert.
INDUCTION_BARS = {
    "previous_token_layer0_max": (0.4, "min"),
    "previous_token_later_max": (0.3, "max"),
    "induction_later_max": (0.7, "min"),
    "induction_layer0_max": (0.1, "max"),
    "teacher_forced_accuracy": (0.9, "min"),
    "greedy_accuracy": (0.85, "min"),
    "greedy_accuracy_longest_block": (0.8, "min"),
    "exact_copy_rate": (0.6, "min"),
    "final_loss_over_first": (1.0, "max"),
}
# Shown per variant, with no bar: which held-out sequence InductionDemo.example() took, and its margin
# (at least 1 logit by the rule whenever a candidate clears it).
INFORMATION = ("example_index", "example_margin")
COPY_BARS = {
    "diagonal_mass": (0.9, "min"),
    "diagonal_mass_worst_head": (0.8, "min"),
    "diagonal_mass_snapshot_last": (0.9, "min"),
    "teacher_forced_accuracy": (0.99, "min"),
    "greedy_accuracy": (0.99, "min"),
    "final_loss": (0.05, "max"),
}


def measure_induction(seed: int, threads: int, **settings) -> dict:
    import torch

    from visualizer.demos import train_induction

    demo = train_induction(seed=seed, threads=threads, **settings)
    ids = demo.sequences(128)
    scores = demo.scores(ids)
    n = demo.settings.block_len
    with torch.no_grad():
        logits = demo.model(ids).logits
    teacher_forced = (logits[:, n + 1 : 2 * n].argmax(-1) == ids[:, n + 2 :]).float().mean()
    generated = demo.generate(ids[:, : n + 3], n - 2)
    greedy = (generated[:, n + 3 :] == ids[:, n + 3 :]).float().mean()
    longest_n = demo.settings.max_block
    other = demo.sequences(64, seed=5, block_len=longest_n)
    longest = (demo.generate(other[:, : longest_n + 3], longest_n - 2) == other).float().mean()
    example = demo.example()
    return {
        "final_loss": demo.losses[-1],
        "final_loss_over_first": demo.losses[-1] / demo.losses[0],
        "previous_token_layer0_max": float(scores["previous_token"][0].max()),
        "previous_token_later_max": float(scores["previous_token"][1:].max()),
        "induction_later_max": float(scores["induction"][1:].max()),
        "induction_layer0_max": float(scores["induction"][0].max()),
        "teacher_forced_accuracy": float(teacher_forced),
        "greedy_accuracy": float(greedy),
        "greedy_accuracy_longest_block": float(longest),
        "exact_copy_rate": float((demo.copy_margins(demo.sequences(256)) > 0).float().mean()),
        "example_index": example.index,
        "example_margin": round(example.margin, 3),
    }


def measure_copy(seed: int, threads: int, **settings) -> dict:
    import torch

    from visualizer.demos import diagonal_mass, train_copy_task

    task = train_copy_task(seed=seed, threads=threads, **settings)
    held_out = task.held_out(256)
    maps = task.cross_attention(held_out)
    with torch.no_grad():
        logits = task.model(held_out, task.decoder_input(held_out))
    return {
        "diagonal_mass": diagonal_mass(maps),
        "diagonal_mass_worst_head": min(diagonal_mass(maps[:, h]) for h in range(maps.shape[1])),
        "diagonal_mass_snapshot_last": diagonal_mass(task.snapshots[task.settings.steps]),
        "teacher_forced_accuracy": float((logits.argmax(-1) == held_out).float().mean()),
        "greedy_accuracy": float((task.predict(held_out) == held_out).float().mean()),
        "final_loss": task.losses[-1],
    }


def run_one(args) -> None:
    """The worker: one variant in this fresh process, its measures as one JSON line on stdout."""
    import torch

    if args.deterministic:
        torch.use_deterministic_algorithms(True)
    if args.float64:
        torch.set_default_dtype(torch.float64)
    started = time.perf_counter()
    measure = measure_induction if args.one == "induction" else measure_copy
    result = measure(args.seed, args.threads, **({"steps": args.steps} if args.steps else {}))
    result["wall_seconds"] = time.perf_counter() - started
    print(json.dumps(result))


def variants(seeds: list[int]) -> list[dict]:
    """Every seed on one thread, the first three on two, and seed 0 deterministic and in float64."""
    chosen = [{"seed": s, "threads": 1} for s in seeds]
    chosen += [{"seed": s, "threads": 2} for s in seeds[:3]]
    chosen += [{"seed": seeds[0], "threads": 1, "deterministic": True}]
    chosen += [{"seed": seeds[0], "threads": 1, "float64": True}]
    return chosen


def label(variant: dict) -> str:
    extra = [name for name in ("deterministic", "float64") if variant.get(name)]
    return f"seed {variant['seed']}, {variant['threads']} thread(s)" + "".join(f", {e}" for e in extra)


def launch(demo: str, variant: dict, steps: int | None) -> dict:
    command = [sys.executable, __file__, "--one", demo, "--seed", str(variant["seed"])]
    command += ["--threads", str(variant["threads"])]
    command += [f"--{name}" for name in ("deterministic", "float64") if variant.get(name)]
    command += ["--steps", str(steps)] if steps else []
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=HERE.parent)
    if done.returncode != 0:  # reported after the others, which are kept
        print(f"{demo} {label(variant)} failed:\n{done.stderr[-3000:]}", file=sys.stderr, flush=True)
        return {**variant, "error": done.stderr.strip().splitlines()[-1]}
    return {**variant, **json.loads(done.stdout.strip().splitlines()[-1])}


def table(demo: str, rows: list[dict], bars: dict) -> str:
    failed = [row for row in rows if "error" in row]
    rows = [row for row in rows if "error" not in row]
    lines = [f"**{demo}** ({len(rows)} trainings)", ""]
    lines += [f"- failed: {label(row)}: {row['error']}" for row in failed] + ([""] if failed else [])
    lines += [
        "| quantity | bar in the tests | worst | best | margin |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, (bar, kind) in bars.items():
        values = [row[name] for row in rows]
        worst, best = (min(values), max(values)) if kind == "min" else (max(values), min(values))
        margin = worst - bar if kind == "min" else bar - worst
        sign = ">=" if kind == "min" else "<="
        lines.append(f"| {name} | {sign} {bar:g} | {worst:.3f} | {best:.3f} | {margin:+.3f} |")
    shown = [*bars, *(name for name in INFORMATION if name in rows[0])]
    lines += [
        "",
        "| variant | seconds | " + " | ".join(shown) + " |",
        "| --- | ---: |" + " ---: |" * len(shown),
    ]
    for row in rows:
        cells = " | ".join(f"{row[name]:.3f}" if name in bars else str(row[name]) for name in shown)
        lines.append(f"| {label(row)} | {row['wall_seconds']:.0f} | {cells} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--demo", choices=["induction", "copy", "both"], default="both")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--steps", type=int, help="training steps (default: the demo's own)")
    parser.add_argument("--jobs", type=int, default=1, help="variants trained at once (each its own process)")
    parser.add_argument("--one", choices=["induction", "copy"], help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--deterministic", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--float64", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        run_one(args)
        return
    demos = ["induction", "copy"] if args.demo == "both" else [args.demo]
    results = {}
    for demo in demos:
        # One-thread variants share the cores (--jobs at once); a variant of more threads runs
        # alone, since two of them at once oversubscribe the cores and spin for many times longer.
        single = [v for v in variants(args.seeds) if v["threads"] == 1]
        with ThreadPoolExecutor(args.jobs) as pool:
            rows = list(pool.map(lambda v, d=demo: launch(d, v, args.steps), single))
        rows += [launch(demo, v, args.steps) for v in variants(args.seeds) if v["threads"] > 1]
        results[demo] = rows
        bars = INDUCTION_BARS if demo == "induction" else COPY_BARS
        print(table(demo, rows, bars), end="\n\n", flush=True)
    out = HERE / "results" / "demo_spread.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(f"wrote {out.relative_to(HERE.parent)}")
    if any("error" in row for rows in results.values() for row in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
