"""Which relevance method to trust: every method of ``explain`` scored against evidence we control.

Three tasks whose evidence is known exactly, each a small model trained here and cached
(``visualizer.demos``):

- ``shapes``: a tiny ViT names the shape of the one coloured object among distractors; the
  evidence is the object's pixel mask (scored as ImageNet-segmentation is in Chefer et al.,
  CVPR 2021: pixel accuracy, mIoU and mAP after min-max normalisation and a mean threshold),
  and the pointing game (the top patch lies on the object);
- ``keywords``: a tiny BERT classifies a sentence of filler words by the one keyword in it; the
  evidence is the keyword's position;
- ``induction``: the 2-layer GPT-2 of the induction demo predicts the next token of a repeated
  block; the evidence is the token after the earlier occurrence of the current one.

And two real models, by perturbation only (no ground truth):

- ``dinov2``: DINOv2 ViT-S/14 on the sample images: faithfulness of the cosine similarity of its
  CLS embedding to that of the unperturbed image, the relevance explaining the embedding's
  projection on the unperturbed one (at the unperturbed image the cosine is at its maximum, 1,
  and its gradient is 0: every gradient method would explain rounding noise);
- ``minilm``: all-MiniLM-L6-v2 explaining the cosine similarity of a sentence's mean-pooled
  embedding to that of a second sentence (the pair's similarity), on a few pairs.

Perturbation: ``visualizer.faithfulness`` removes tokens most- and least-relevant-first (10
steps); the AUCs are of the target as tokens go (lower is better for most-first, higher for
least-first), the difference least minus most (higher is better). "random" is uniform random
scores, the floor every method should clear.

    .venv/bin/python benchmarks/relevance_table.py                 # about 10 minutes; writes the table
    .venv/bin/python benchmarks/relevance_table.py --tasks keywords induction --count 32 --print-only

The table is written between the ``relevance-table`` markers of ``docs/guides/relevance.md``
and ``benchmarks/README.md`` (``--print-only``: printed only). Everything runs on one thread
(the models are small; one thread is also the fastest on a busy machine).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGETS = (ROOT / "docs" / "guides" / "relevance.md", ROOT / "benchmarks" / "README.md")
START, END = "<!-- relevance-table:start -->", "<!-- relevance-table:end -->"
TASKS = ("shapes", "keywords", "induction", "dinov2", "minilm")
PAIRS = (
    ("A man is playing a guitar on stage.", "Someone performs music for an audience."),
    ("The cat sleeps on the warm windowsill.", "A kitten naps in the sunshine by the window."),
    ("Stock markets fell sharply after the announcement.", "Share prices dropped following the news."),
    ("She planted tomatoes in the garden this spring.", "Vegetables were grown in the backyard."),
)


def methods() -> list[str]:
    from visualizer.relevance import METHODS

    return [*METHODS, "random"]


def demo_rows(task: str, count: int | None) -> dict[str, dict[str, float]]:
    """{method: measures} of a ground-truth demo, on ``count`` held-out items (None: its default)."""
    from visualizer import demos

    demo = {
        "shapes": demos.load_shapes_demo,
        "keywords": demos.load_keyword_demo,
        "induction": demos.load_induction_demo,
    }[task](seed=0)
    sized = {} if count is None else {"count": count}
    return {method: demo.ground_truth_scores(method, **sized) for method in methods()}


def perturbation_rows(task: str, steps: int) -> dict[str, dict[str, float]]:
    """{method: faithfulness AUCs} of a real-weight model, its own embedding's similarity the target."""
    import torch

    from visualizer import explain, faithfulness

    if task == "dinov2":
        from visualizer.models import load_vit, prepare_image, sample_images

        model = load_vit()
        inputs = torch.cat([prepare_image(image)[0] for image in sample_images().values()])
        with torch.no_grad():
            reference = model(inputs)

        def similarity(output):  # (integrated gradients calls it on the batch repeated per step)
            return torch.nn.functional.cosine_similarity(output, _tiled(reference, output), dim=-1)

        direction = reference / reference.norm(dim=-1, keepdim=True)

        def projection(output):  # explained: the cosine is at its maximum here, its gradient 0
            return (output * _tiled(direction, output)).sum(-1)

        position = None
    else:
        from visualizer.models import load_bert

        model, tokenizer = load_bert()
        encoded = tokenizer([a for a, _ in PAIRS], padding=True, return_tensors="pt")
        others = tokenizer([b for _, b in PAIRS], padding=True, return_tensors="pt")
        inputs = {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}
        with torch.no_grad():
            reference = _mean_pooled(model(**others).last_hidden_state, others["attention_mask"])
        mask = encoded["attention_mask"]

        def similarity(output):
            hidden = output.last_hidden_state
            pooled = _mean_pooled(hidden, _tiled(mask, hidden))
            return torch.nn.functional.cosine_similarity(pooled, _tiled(reference, hidden), dim=-1)

        projection = similarity
        position = 0
    rows = {}
    generator = torch.Generator().manual_seed(0)
    for method in methods():
        if method == "random":  # uniform scores in an explanation's place (its layout: the patch grid)
            shaped = explain(model, inputs, projection, method="attention", position=position)
            scores = torch.rand(shaped.scores.shape, generator=generator)
            relevance = dataclasses.replace(shaped, scores=scores, method="random")
            query = shaped.position
        else:
            relevance = explain(model, inputs, projection, method=method, position=position)
            query = relevance.position
        check = faithfulness(
            model, inputs, relevance, similarity, position=query, steps=steps, random_orders=3
        )
        rows[method] = {
            **{f"auc_{order}": float(check.auc[order].mean()) for order in check.auc},
            "auc_difference": float(check.difference.mean()),
        }
    return rows


def _tiled(tensor, output):
    """``tensor`` (batch, ...) repeated to the output's batch (integrated gradients runs the batch
    once per step, step after step)."""
    return tensor.repeat(output.shape[0] // tensor.shape[0], *([1] * (tensor.dim() - 1)))


def _mean_pooled(hidden, mask):
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1)


# -- the table -------------------------------------------------------------------------------------

#: (task, measure, heading, better): the columns of the summary table.
COLUMNS = (
    ("shapes", "pointing_game", "shapes: pointing", "high"),
    ("shapes", "miou", "shapes: mIoU", "high"),
    ("shapes", "map", "shapes: mAP", "high"),
    ("keywords", "pointing_game", "keywords: pointing", "high"),
    ("keywords", "map", "keywords: mAP", "high"),
    ("induction", "pointing_game", "induction: pointing", "high"),
    ("shapes", "auc_difference", "shapes: ΔAUC", "high"),
    ("keywords", "auc_difference", "keywords: ΔAUC", "high"),
    ("induction", "auc_difference", "induction: ΔAUC", "high"),
    ("dinov2", "auc_difference", "DINOv2: ΔAUC", "high"),
    ("minilm", "auc_difference", "MiniLM: ΔAUC", "high"),
)


def table(results: dict[str, dict[str, dict[str, float]]]) -> str:
    """The summary (methods x measures), the best of each column in bold, then one detail table
    per task."""
    columns = [column for column in COLUMNS if column[0] in results]
    names = methods()
    lines = [
        "| method | " + " | ".join(heading for _, _, heading, _ in columns) + " |",
        "| --- | " + " | ".join("---:" for _ in columns) + " |",
    ]
    best = {}
    for task, measure, _, better in columns:  # (as shown: two methods that round alike tie)
        values = [round(results[task][name][measure], 2) for name in names if name != "random"]
        best[(task, measure)] = max(values) if better == "high" else min(values)
    for name in names:
        cells = []
        for task, measure, _, _ in columns:
            value = round(results[task][name][measure], 2)
            text = f"{value:.2f}"
            cells.append(f"**{text}**" if name != "random" and value == best[(task, measure)] else text)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    for task in results:
        measures = list(next(iter(results[task].values())))
        lines += ["", f"**{task}**", "", "| method | " + " | ".join(measures) + " |"]
        lines.append("| --- | " + " | ".join("---:" for _ in measures) + " |")
        for name in names:
            lines.append(
                f"| {name} | " + " | ".join(f"{results[task][name][m]:.3f}" for m in measures) + " |"
            )
    return "\n".join(lines)


def write(text: str, paths=TARGETS) -> None:
    """Put ``text`` between the markers of each file (which must have them)."""
    for path in paths:
        content = path.read_text(encoding="utf-8")
        pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.S)
        if not pattern.search(content):
            raise SystemExit(f"{path} has no {START} ... {END} block to write the table into")
        path.write_text(pattern.sub(lambda _: f"{START}\n{text}\n{END}", content), encoding="utf-8")
        print(f"wrote the table into {path.relative_to(ROOT)}", file=sys.stderr)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    parser.add_argument(
        "--count", type=int, default=None, help="held-out items per demo (default: each demo's)"
    )
    parser.add_argument("--steps", type=int, default=10, help="faithfulness steps of the real models")
    parser.add_argument("--print-only", action="store_true", help="print the table, write no file")
    parser.add_argument("--json", type=Path, help="also write the measures to this JSON file")
    parser.add_argument(
        "--from-json", type=Path, help="make the table from measures --json wrote, running nothing"
    )
    args = parser.parse_args(argv)
    if args.from_json:
        results = json.loads(args.from_json.read_text(encoding="utf-8"))
        text = table(results)
        print(text)
        if not args.print_only:
            write(text)
        return
    import torch

    torch.set_num_threads(1)
    results = {}
    for task in args.tasks:
        started = time.perf_counter()
        if task in ("dinov2", "minilm"):
            results[task] = perturbation_rows(task, args.steps)
        else:
            results[task] = demo_rows(task, args.count)
        print(f"{task}: {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    text = table(results)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1), encoding="utf-8")
    if not args.print_only:
        write(text)


if __name__ == "__main__":
    main()
