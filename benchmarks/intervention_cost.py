"""What ablation costs: a forward inside ``ablate`` against the plain forward, and ``head_effects``
against as many plain forwards as it has ablations, side by side in one run.

Models: the tiny Llama of the long-context benchmark (``bench_long.build_llama``: hidden 256,
4 layers, 8 heads, 2 key/value heads, sdpa) on 2,048 random tokens, batch 1; DINOv2 ViT-S/14
(the offline weights of ``visualizer.models.load_vit()``), 224 px, batch 8. Eval, no_grad,
torch on 1 thread. Each round runs every variant once, in a new shuffled order:

- ``plain``: the model as shipped (its fused kernel);
- ``ablate open``: a forward inside ``ablate(model, {0: [0]})`` opened before the rounds;
- ``ablate per forward``: the ``with ablate(...)`` block around each forward (it finds the
  model's attention modules and their edit points each time).

The targets (issue "Does this head matter?"): ``ablate open`` at most 1.10x the plain forward
(median of the rounds). Then, for DINOv2 at batch 1, ``head_effects`` over its 72 heads
(one zero-ablation each, a cosine distance of the CLS embedding as the metric) against 72
plain forwards, each timed ``--effects-rounds`` times interleaved: target at most 1.5x.

    .venv/bin/python benchmarks/intervention_cost.py              # about 3 minutes
    .venv/bin/python benchmarks/intervention_cost.py --rounds 3 --effects-rounds 1   # a smoke run
"""

from __future__ import annotations

import argparse
import contextlib
import random
import statistics

import torch
from model_timing import interleaved


def models() -> dict:
    from bench_long import build_llama

    from visualizer.models import load_vit

    torch.manual_seed(0)
    return {
        "tiny Llama, 2,048 tokens, batch 1": (build_llama(), torch.randint(0, 1000, (1, 2048))),
        "DINOv2 ViT-S/14, 224 px, batch 8": (load_vit().eval(), torch.randn(8, 3, 224, 224)),
    }


def variants(model, inputs) -> dict:
    from visualizer import ablate

    stack = contextlib.ExitStack()

    def plain():
        model(inputs)

    def per_forward():
        with ablate(model, {0: [0]}):
            model(inputs)

    opened = [False]

    def open_block():
        if not opened[0]:
            stack.enter_context(ablate(model, {0: [0]}))
            opened[0] = True
        model(inputs)

    return {"plain": plain, "ablate open": open_block, "ablate per forward": per_forward}, stack


def effects_cost(rounds: int) -> None:
    from visualizer import head_effects
    from visualizer.models import load_vit

    model = load_vit().eval()
    images = torch.randn(1, 3, 224, 224)
    clean = model(images)

    def metric(embedding):
        return 1 - torch.nn.functional.cosine_similarity(embedding, clean).mean()

    heads = len(model.blocks) * model.blocks[0].attn.num_heads

    def plain_forwards():
        for _ in range(heads):
            model(images)

    runs = {
        f"{heads} plain forwards": plain_forwards,
        "head_effects (default: 16 ablations per forward)": lambda: head_effects(model, images, metric),
        "head_effects(per_forward=1)": lambda: head_effects(model, images, metric, per_forward=1),
    }
    times = interleaved(runs, rounds)
    base = statistics.median(times[f"{heads} plain forwards"])
    print(f"\nDINOv2 ViT-S/14, batch 1, {heads} heads: {heads} plain forwards {base:.2f} s (median)")
    for key, values in times.items():
        print(f"  {key:50s} {statistics.median(values) / base:.3f}x median  (target <= 1.5x)")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds per model (default 15)")
    parser.add_argument("--effects-rounds", type=int, default=3, help="rounds of the head_effects timing")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    random.seed(0)
    print(f"torch {torch.__version__}, 1 thread, {args.rounds} rounds; ratios to the plain forward")
    with torch.no_grad():
        for name, (model, inputs) in models().items():
            runs, stack = variants(model, inputs)
            with stack:
                times = interleaved(runs, args.rounds)
            base_median, base_min = statistics.median(times["plain"]), min(times["plain"])
            print(f"\n{name}: plain forward {base_median * 1e3:.1f} ms (median)")
            for key, values in times.items():
                print(
                    f"  {key:20s} {statistics.median(values) / base_median:.3f}x median  "
                    f"{min(values) / base_min:.3f}x min"
                    + ("  (target <= 1.10x)" if key == "ablate open" else "")
                )
        effects_cost(args.effects_rounds)


if __name__ == "__main__":
    main()
