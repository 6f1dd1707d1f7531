"""What ``explain(method="attention_grad")`` and ``explain(method="attnlrp")`` cost at long
inputs, against the plain forward plus backward, on the tiny Llama of ``bench_long.py`` (hidden
256, 4 layers, 8 heads, 2 key/value heads, sdpa), batch 1, one target (the logit of token 0 at
the last position).

Variants, each timed and measured the same way:

- ``forward+backward``: the sdpa forward and ``backward()`` of the target (the baseline);
- ``attention_grad``: ``explain(model, ids, 0)``: the forward with the kernel kept, gradient
  taps, and the explained row propagated through each layer's map rebuilt block by block;
- ``attnlrp``: ``explain(model, ids, 0, method="attnlrp")``: the forward with the kernel kept on
  detached queries and keys, the norms' scales constant, one backward to the first block's input;
- ``eager relevance``: the usual way: the eager attention with ``output_attentions=True``,
  every map's gradient retained, Chefer's rule on the whole matrices (only up to the length
  whose maps and gradients fit ``--budget-gb``; at 8,192 tokens they would need about 17 GB).

Memory: the peak-RSS rise of one step in a fresh process per variant and length, after a
warm-up step, ``malloc_trim`` and a reset of VmHWM through ``/proc/self/clear_refs``. Time:
the median of ``--rounds`` interleaved rounds in one process, as a ratio to forward+backward.
Targets (issues "Which tokens drove this output" and "AttnLRP, ground truth we control"):
attention_grad's and attnlrp's peak rise at most 2x the baseline's plus 512 MB at every length;
their time at most 5x; 16,384 tokens complete.

    .venv/bin/python benchmarks/relevance_long.py                          # 1k-16k, about 15 minutes
    .venv/bin/python benchmarks/relevance_long.py --lengths 512 1024 --rounds 1   # a smoke run
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys

import torch

SCRIPT = __file__
GB = 2**30
MB = 2**20
LENGTHS = (1024, 2048, 4096, 8192, 16384)
VARIANTS = ("forward+backward", "attention_grad", "attnlrp", "eager relevance")


def step_of(model, ids, key: str):
    """One step of ``key`` on ``ids``: returns a function that runs it."""
    from visualizer import explain

    def forward_backward():
        logits = model(ids).logits[:, -1, 0]
        logits.sum().backward()
        model.zero_grad(set_to_none=True)

    def attention_grad():
        explain(model, ids, 0)

    def attnlrp():
        explain(model, ids, 0, method="attnlrp")

    def eager_relevance():
        model.set_attn_implementation("eager")
        try:
            out = model(ids, output_attentions=True)
            maps = out.attentions
            for weights in maps:
                weights.retain_grad()
            out.logits[:, -1, 0].sum().backward()
            tokens = ids.shape[1]
            row = torch.zeros(1, tokens)
            row[0, -1] = 1.0
            for weights in reversed(maps):
                mean = (weights.grad * weights).clamp(min=0).mean(1)
                row = row + torch.einsum("bq,bqk->bk", row, mean)
            model.zero_grad(set_to_none=True)
        finally:
            model.set_attn_implementation("sdpa")

    return {
        "forward+backward": forward_backward,
        "attention_grad": attention_grad,
        "attnlrp": attnlrp,
        "eager relevance": eager_relevance,
    }[key]


def eager_need(length: int) -> int:
    """The eager maps and their gradients: 4 layers x 8 heads x n x n float32, twice, and the
    softmax's saved input: about 3 maps per layer."""
    return 4 * 8 * length * length * 4 * 3


def one_variant(length: int, key: str) -> dict:
    sys.path.insert(0, str(__import__("pathlib").Path(SCRIPT).resolve().parent))
    from bench_long import build_llama
    from model_memory import _peak_bytes, _release_free_memory, _reset_peak, rss_bytes

    torch.manual_seed(0)
    model = build_llama()
    ids = torch.randint(0, 1000, (1, length))
    step = step_of(model, ids, key)
    step()  # warm-up
    import gc

    gc.collect()
    _release_free_memory()
    reset = _reset_peak()
    before = rss_bytes()
    step()
    return {"peak_increase": _peak_bytes() - before, "reset": reset}


def memory(length: int, budget: int) -> dict:
    results = {}
    for key in VARIANTS:
        if key == "eager relevance" and eager_need(length) > budget:
            results[key] = {"skipped": f"needs ~{eager_need(length) / GB:.0f} GB"}
            continue
        done = subprocess.run(
            [sys.executable, SCRIPT, "--one-variant", str(length), key], capture_output=True, text=True
        )
        if done.returncode != 0:
            results[key] = {"failed": done.stderr.strip().splitlines()[-1][:200]}
            continue
        results[key] = json.loads(done.stdout.strip().splitlines()[-1])
    return results


def timing(length: int, rounds: int, budget: int) -> dict:
    from bench_long import build_llama
    from model_timing import interleaved

    torch.manual_seed(0)
    model = build_llama()
    ids = torch.randint(0, 1000, (1, length))
    keys = [key for key in VARIANTS if key != "eager relevance" or eager_need(length) <= budget]
    times = interleaved({key: step_of(model, ids, key) for key in keys}, rounds)
    return {key: statistics.median(values) for key, values in times.items()}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=list(LENGTHS))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--budget-gb", type=float, default=12.0, help="the eager relevance runs only below this"
    )
    parser.add_argument("--one-variant", nargs=2, metavar=("LENGTH", "KEY"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one_variant:
        print(json.dumps(one_variant(int(args.one_variant[0]), args.one_variant[1])))
        return
    random.seed(0)
    budget = int(args.budget_gb * GB)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; tiny Llama, batch 1\n")
    print("| tokens | variant | time / forward+backward | peak-RSS rise | target |")
    print("| ---: | --- | ---: | ---: | --- |")
    for length in args.lengths:
        peaks = memory(length, budget)
        times = timing(length, args.rounds, budget)
        base_time = times["forward+backward"]
        base_peak = peaks["forward+backward"].get("peak_increase")
        for key in VARIANTS:
            peak = peaks[key]
            shown = (
                f"{peak['peak_increase'] / MB:,.0f} MB"
                if "peak_increase" in peak
                else peak.get("skipped") or peak["failed"]
            )
            ratio = f"{times[key] / base_time:.2f}x" if key in times else "-"
            target = ""
            if key in ("attention_grad", "attnlrp") and base_peak is not None and "peak_increase" in peak:
                limit = 2 * base_peak + 512 * MB
                held = peak["peak_increase"] <= limit and times[key] <= 5 * base_time
                target = f"{'met' if held else 'MISSED'} (<= {limit / MB:,.0f} MB, <= 5x)"
            print(f"| {length:,} | {key} | {ratio} | {shown} | {target} |", flush=True)


if __name__ == "__main__":
    main()
