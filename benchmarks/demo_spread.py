"""How far the demos' asserted quantities move when training rounds differently.

Each demo is trained from scratch, one variant per fresh process, over several seeds, one and
two intra-op threads, ``torch.use_deterministic_algorithms(True)`` and a float64 reference
(``torch.set_default_dtype(torch.float64)``). For every quantity the tests assert, the table
gives the bar the tests set, the worst and best value over the variants and the margin
(worst value minus the bar, or bar minus worst for an upper bound). A new machine trains
other weights (other processor, other rounding): the margins are what that may move.

Two cautions. On one CPU the thread and deterministic variants of a seed may round just as the
plain one does, so they need not show what another machine's rounding does; ``--nudges N`` adds
N trainings of the first seed from initial weights each moved by one float32 step (up or down
at random), the size of the difference another machine's rounding makes. And for the keyword and shapes demos
float64 draws other initial weights and other training data from the same seed: one more seed,
not a rounding of the first (measured in float32 after training, as the tests measure).

    .venv/bin/python benchmarks/demo_spread.py                   # induction and copy (about 12 min)
    .venv/bin/python benchmarks/demo_spread.py --demo copy       # the copy task only (about a minute)
    .venv/bin/python benchmarks/demo_spread.py --demo keywords --nudges 4   # about 2 min
    .venv/bin/python benchmarks/demo_spread.py --demo shapes     # 40-90 s a training, 3 min on a busy machine
    .venv/bin/python benchmarks/demo_spread.py --demo shapes --few --nudges 2    # 7 trainings
    .venv/bin/python benchmarks/demo_spread.py --demo all --seeds 0 1 --jobs 2

Training runs outside the user cache (``train_induction``, not ``load_induction_demo``), so
nothing cached is read or written. Results go to stdout as Markdown and to
``benchmarks/results/demo_spread.json``, where a run replaces only the demos it ran.
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
# The keyword demo (tests/demos/test_keywords.py). A difference "a_over_b" stands for the test's
# "a > b + bar" (and "a_under_b" for "a < b - bar"), with "random" the method "random"; those
# bars are strict, so a margin of 0 fails them. written_keyword_sentences_right must be 1: every
# keyword, written into one sentence, is classified right.
KEYWORDS_BARS = {
    "accuracy": (0.95, "min"),
    "accuracy_seed_9": (0.95, "min"),
    "mean_loss_last_20": (0.1, "max"),
    "first_loss": (0.1, "min"),
    "keyword_swap_rate": (0.9, "min"),
    "other_words_swapped_accuracy": (0.95, "min"),
    "written_keyword_sentences_right": (1.0, "min"),
    "attention_grad_pointing_game": (0.6, "min"),
    "attention_grad_evidence_rank": (2.0, "max"),
    "input_x_gradient_pointing_game": (0.35, "min"),
    "pointing_game_over_random": (0.3, "min"),
    "map_over_random": (0.2, "min"),
    "evidence_rank_under_random": (1.0, "min"),
    "auc_difference": (1.0, "min"),
    "half_auc_difference_over_random_abs": (0.0, "min"),
    "auc_random_over_most_relevant_first": (0.0, "min"),
    "auc_least_relevant_first_over_random": (0.0, "min"),
}
# The shapes demo (tests/demos/test_shapes.py), differences named as for the keyword demo.
SHAPES_BARS = {
    "accuracy": (0.95, "min"),
    "final_loss": (0.3, "max"),
    "first_loss": (0.3, "min"),
    "accuracy_without_target": (0.4, "max"),
    "attention_grad_pointing_game": (0.75, "min"),
    "random_pointing_game": (0.3, "max"),
    "pixel_accuracy_over_random": (0.05, "min"),
    "miou_over_random": (0.05, "min"),
    "map_over_random": (0.05, "min"),
    "auc_most_relevant_first_under_random": (0.0, "min"),
    "auc_difference_over_random": (1.0, "min"),
    "circles_pointing_game": (0.7, "min"),
    "circles_miou_over_noise": (0.0, "min"),
    "circles_map_over_noise": (0.0, "min"),
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


# Where each demo's module builds its untrained model (``_untrained``), for --nudges.
MODULES = {"induction": "induction", "copy": "copy_task", "keywords": "keywords", "shapes": "shapes"}


def nudge_initial_weights(demo: str, nudge: int) -> None:
    """Train from initial weights one float32 step away from the seed's, as another machine might.

    Every floating parameter of the untrained model moves to its next float up or down, the
    direction drawn from ``nudge``: the data and the seed stay, only the last bits differ.
    """
    import importlib

    import torch

    module = importlib.import_module(f"visualizer.demos.{MODULES[demo]}")
    untrained = module._untrained

    def nudged(settings):
        built = untrained(settings)
        model = built if isinstance(built, torch.nn.Module) else built.model
        generator = torch.Generator().manual_seed(nudge)
        with torch.no_grad():
            for parameter in model.parameters():
                up = torch.rand(parameter.shape, generator=generator) < 0.5
                away = torch.where(up, float("inf"), float("-inf")).to(parameter.dtype)
                parameter.copy_(torch.nextafter(parameter, away))
        return built

    module._untrained = nudged


def measured_in_float32(model) -> None:
    """Measure a float64-trained model as the tests do: in float32, the default dtype put back.

    The float64 variant trains in float64 only: ``explain``'s attention_grad fails on a float64
    default dtype ("expected scalar type Double but found Float" in relevance._mean_relevance), and
    float32 evaluation draws the tests' own held-out images and scores.
    """
    import torch

    if torch.get_default_dtype() == torch.float64:
        model.float()
        torch.set_default_dtype(torch.float32)


def measure_keywords(seed: int, threads: int, **settings) -> dict:
    """The quantities of tests/demos/test_keywords.py, each on the test's own held-out sentences."""
    import numpy as np
    import torch

    from visualizer.demos import train_keywords
    from visualizer.demos._truth import evidence_rank, pointing_game

    demo = train_keywords(seed=seed, threads=threads, **settings)
    measured_in_float32(demo.model)
    s = demo.settings
    batch = demo.sentences(256)
    # test_the_keyword_decides_the_label
    ids = batch.inputs["input_ids"].clone()
    swapped_labels = (batch.labels + 1) % s.labels
    ids[torch.from_numpy(batch.evidence)] = torch.tensor(s.keyword_ids)[swapped_labels, -1]
    swapped = demo.predict({**batch.inputs, "input_ids": ids})
    rest = demo.sentences(256, seed=17)
    ids = batch.inputs["input_ids"].clone()
    others = torch.from_numpy(~batch.ignore & ~batch.evidence & ~rest.ignore & ~rest.evidence)
    ids[others] = rest.inputs["input_ids"][others]
    changed = demo.predict({**batch.inputs, "input_ids": ids})
    # test_encode_tokens_and_vocabulary: every keyword in one written sentence, all right
    written = [
        demo.predict(demo.encode(f"the lamp was {keyword} and the ball")).item() == label
        for label, name in enumerate(demo.classes)
        for keyword in demo.keywords[name]
    ]
    # test_explanations_point_at_the_keyword
    small = demo.sentences(128)
    relevance = {method: demo.relevance(method, small) for method in ("attention_grad", "input_x_gradient")}
    kept = {"ignore": small.ignore}
    # test_ground_truth_scores_tell_a_method_from_random
    found = demo.ground_truth_scores("attention_grad", 64, faithfulness_steps=4)
    chance = demo.ground_truth_scores("random", 64, faithfulness_steps=4)
    return {
        "accuracy": demo.accuracy(batch),
        "accuracy_seed_9": demo.accuracy(demo.sentences(256, seed=9)),
        "mean_loss_last_20": float(np.mean(demo.losses[-20:])),
        "first_loss": demo.losses[0],
        "keyword_swap_rate": float((swapped == swapped_labels).float().mean()),
        "other_words_swapped_accuracy": float((changed == batch.labels).float().mean()),
        "written_keyword_sentences_right": float(np.mean(written)),
        "attention_grad_pointing_game": pointing_game(relevance["attention_grad"], small.evidence, **kept),
        "attention_grad_evidence_rank": float(
            evidence_rank(relevance["attention_grad"], small.evidence, **kept).mean()
        ),
        "input_x_gradient_pointing_game": pointing_game(
            relevance["input_x_gradient"], small.evidence, **kept
        ),
        "pointing_game_over_random": found["pointing_game"] - chance["pointing_game"],
        "map_over_random": found["map"] - chance["map"],
        "evidence_rank_under_random": chance["evidence_rank"] - found["evidence_rank"],
        "auc_difference": found["auc_difference"],
        "half_auc_difference_over_random_abs": found["auc_difference"] / 2 - abs(chance["auc_difference"]),
        "auc_random_over_most_relevant_first": found["auc_random"] - found["auc_most_relevant_first"],
        "auc_least_relevant_first_over_random": found["auc_least_relevant_first"] - found["auc_random"],
    }


def measure_shapes(seed: int, threads: int, **settings) -> dict:
    """The quantities of tests/demos/test_shapes.py, each on the test's own held-out images."""
    import numpy as np

    from visualizer.demos import train_shapes
    from visualizer.demos._truth import segmentation_scores
    from visualizer.relevance import explain

    demo = train_shapes(seed=seed, threads=threads, **settings)
    measured_in_float32(demo.model)
    control, control_labels, _ = demo.images(256, with_target=False)
    found = demo.ground_truth_scores("attention_grad", count=128)
    chance = demo.ground_truth_scores("random", count=128)
    # test_ground_truth_scores_agree_with_explain_and_the_scoring: the circles of images(256)
    images, labels, masks = demo.images(256)
    circles = labels == 0
    relevance = explain(demo.model, images[circles], 0, method="attention_grad")
    patches = np.stack([relevance.patches(item) for item in range(int(circles.sum()))])
    circle_masks = masks[circles].numpy()
    hits = [demo.patch_masks(circle_masks)[item].flat[patch.argmax()] for item, patch in enumerate(patches)]
    scores = segmentation_scores(demo.pixel_scores(patches), circle_masks)
    noise = segmentation_scores(np.random.default_rng(0).random((len(patches), 48, 48)), circle_masks)
    return {
        "accuracy": demo.accuracy(1024),
        "final_loss": demo.losses[-1],
        "first_loss": demo.losses[0],
        "accuracy_without_target": float((demo.predict(control) == control_labels).float().mean()),
        "attention_grad_pointing_game": found["pointing_game"],
        "random_pointing_game": chance["pointing_game"],
        **{f"{name}_over_random": found[name] - chance[name] for name in ("pixel_accuracy", "miou", "map")},
        "auc_most_relevant_first_under_random": chance["auc_most_relevant_first"]
        - found["auc_most_relevant_first"],
        "auc_difference_over_random": found["auc_difference"] - chance["auc_difference"],
        "circles_pointing_game": float(np.mean(hits)),
        "circles_miou_over_noise": scores["miou"] - noise["miou"],
        "circles_map_over_noise": scores["map"] - noise["map"],
    }


MEASURES = {
    "induction": (measure_induction, INDUCTION_BARS),
    "copy": (measure_copy, COPY_BARS),
    "keywords": (measure_keywords, KEYWORDS_BARS),
    "shapes": (measure_shapes, SHAPES_BARS),
}


def run_one(args) -> None:
    """The worker: one variant in this fresh process, its measures as one JSON line on stdout."""
    import torch

    if args.deterministic:
        torch.use_deterministic_algorithms(True)
    if args.float64:
        torch.set_default_dtype(torch.float64)
    if args.nudge:
        nudge_initial_weights(args.one, args.nudge)
    started = time.perf_counter()
    measure = MEASURES[args.one][0]
    result = measure(args.seed, args.threads, **({"steps": args.steps} if args.steps else {}))
    result["wall_seconds"] = time.perf_counter() - started
    print(json.dumps(result))


def variants(seeds: list[int], nudges: int = 0, few: bool = False) -> list[dict]:
    """Every seed on one thread, the first three on two, the first deterministic, in float64 and
    nudged ``nudges`` times; ``few``: only the first on two threads, neither deterministic nor float64."""
    chosen = [{"seed": s, "threads": 1} for s in seeds]
    chosen += [{"seed": s, "threads": 2} for s in seeds[: 1 if few else 3]]
    if not few:
        chosen += [{"seed": seeds[0], "threads": 1, "deterministic": True}]
        chosen += [{"seed": seeds[0], "threads": 1, "float64": True}]
    chosen += [{"seed": seeds[0], "threads": 1, "nudge": n} for n in range(1, nudges + 1)]
    return chosen


def label(variant: dict) -> str:
    extra = [name for name in ("deterministic", "float64") if variant.get(name)]
    extra += [f"nudged {variant['nudge']}"] if variant.get("nudge") else []
    return f"seed {variant['seed']}, {variant['threads']} thread(s)" + "".join(f", {e}" for e in extra)


def launch(demo: str, variant: dict, steps: int | None) -> dict:
    command = [sys.executable, __file__, "--one", demo, "--seed", str(variant["seed"])]
    command += ["--threads", str(variant["threads"])]
    command += [f"--{name}" for name in ("deterministic", "float64") if variant.get(name)]
    command += ["--nudge", str(variant["nudge"])] if variant.get("nudge") else []
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
    parser.add_argument(
        "--demo",
        choices=[*MEASURES, "both", "all"],
        default="both",
        help="both: induction and copy; all: every demo",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--steps", type=int, help="training steps (default: the demo's own)")
    parser.add_argument(
        "--nudges",
        type=int,
        default=0,
        help="trainings of the first seed from initial weights one float32 step off",
    )
    parser.add_argument(
        "--few",
        action="store_true",
        help="for a slow demo: the first seed alone on two threads, no deterministic or float64 run",
    )
    parser.add_argument("--jobs", type=int, default=1, help="variants trained at once (each its own process)")
    parser.add_argument("--one", choices=list(MEASURES), help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--deterministic", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--float64", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--nudge", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        run_one(args)
        return
    demos = {"both": ["induction", "copy"], "all": list(MEASURES)}.get(args.demo, [args.demo])
    out = HERE / "results" / "demo_spread.json"
    # Earlier runs of other demos are kept: a run of one demo replaces only that demo's rows.
    results = json.loads(out.read_text()) if out.is_file() else {}
    for demo in demos:
        # One-thread variants share the cores (--jobs at once); a variant of more threads runs
        # alone, since two of them at once oversubscribe the cores and spin for many times longer.
        single = [v for v in variants(args.seeds, args.nudges, args.few) if v["threads"] == 1]
        with ThreadPoolExecutor(args.jobs) as pool:
            rows = list(pool.map(lambda v, d=demo: launch(d, v, args.steps), single))
        rows += [
            launch(demo, v, args.steps)
            for v in variants(args.seeds, args.nudges, args.few)
            if v["threads"] > 1
        ]
        results[demo] = rows
        print(table(demo, rows, MEASURES[demo][1]), end="\n\n", flush=True)
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(f"wrote {out.relative_to(HERE.parent)}")
    if any("error" in row for demo in demos for row in results[demo]):
        sys.exit(1)


if __name__ == "__main__":
    main()
