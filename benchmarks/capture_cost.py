"""What capture_attention and a Seam cost on a batch-1 ViT forward, side by side in one run.

For DINOv2 ViT-S/14 (the offline weights of ``visualizer.models.load_vit()``) and timm's
ViT-B/16 (random weights), 224 px, batch 1, eval, no_grad, torch on 1 thread, each round
runs every variant once in a new shuffled order:

- ``fused``: the model as shipped (timm's fused attention);
- ``capture open``: a forward inside a capture opened before the rounds (maps rebuilt on
  demand, fused kernel kept): the cost per attention call;
- ``capture per forward``: ``with capture_attention(model) as maps:`` around each forward,
  which also searches the model for its attention modules and guards them for copying;
- ``seam open``: a forward inside a ``Seam`` with an identity editor on every attention
  module (the editor returns None: the projection gets its own input), opened before;
- ``seam per forward``: the Seam opened and closed around each forward.

It prints, per model, each variant's median and minimum over the rounds as a ratio to the
fused forward's, and the capture's cost per attention call in ms::

    .venv/bin/python benchmarks/capture_cost.py              # 15 rounds, about 2 minutes
    .venv/bin/python benchmarks/capture_cost.py --rounds 3   # a smoke run
"""

from __future__ import annotations

import argparse
import random
import statistics

import torch
from model_timing import interleaved


class Keep:
    """An identity editor: looks at every call, changes nothing."""

    def __init__(self) -> None:
        self.calls = 0

    def edit(self, call):
        self.calls += 1
        return None


def models() -> dict:
    import timm

    from visualizer.models import load_vit

    torch.manual_seed(0)
    return {
        "dinov2-vits14-b1": load_vit().eval(),
        "vitb16-b1": timm.create_model("vit_base_patch16_224", pretrained=False).eval(),
    }


def variants(model, images) -> dict:
    from visualizer import capture_attention
    from visualizer._adapters._seam import Seam

    capture = capture_attention(model)
    seam, open_seam = Seam(model, editors=[Keep()]), Seam(model, editors=[Keep()])

    def fused():
        model(images)

    def per_forward():
        with capture_attention(model):
            model(images)

    def edited():
        seam.open()
        model(images)
        seam.close()

    return {
        "fused": fused,
        "capture open": Open(capture.start, lambda: capture.stop(check=False), fused),
        "capture per forward": per_forward,
        "seam open": Open(open_seam.open, open_seam.close, fused),
        "seam per forward": edited,
    }


class Open:
    """``run()`` inside a capture or seam that stays open across the rounds: ``start()`` when it
    first runs, ``stop()`` at ``close()``."""

    def __init__(self, start, stop, run) -> None:
        self.start, self.stop, self.run, self.is_open = start, stop, run, False

    def __call__(self) -> None:
        if not self.is_open:
            self.start()
            self.is_open = True
        self.run()

    def close(self) -> None:
        if self.is_open:
            self.stop()
            self.is_open = False


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds (default 15)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    random.seed(0)
    print(f"torch {torch.__version__}, 1 thread, {args.rounds} rounds; ratios to the fused forward")
    for name, model in models().items():
        images = torch.randn(1, 3, 224, 224)
        runs = variants(model, images)
        with torch.no_grad():
            times = interleaved(runs, args.rounds)  # (its warm-up checks that the capture captures)
        for run in runs.values():
            if isinstance(run, Open):
                run.close()
        layers = sum(1 for _ in _attention_modules(model))
        base_median, base_min = statistics.median(times["fused"]), min(times["fused"])
        print(f"\n{name}: fused forward {base_median * 1e3:.1f} ms (median), {layers} attention modules")
        for key, values in times.items():
            median, low = statistics.median(values), min(values)
            per_call = (median - base_median) / layers * 1e3
            print(
                f"  {key:20s} {median / base_median:.3f}x median  {low / base_min:.3f}x min"
                f"  ({per_call:+.2f} ms per attention call)"
            )


def _attention_modules(model):
    from visualizer import get_local
    from visualizer._adapters import find_targets

    return find_targets(model, get_local)[0]


if __name__ == "__main__":
    main()
