"""Kept bytes and time of a lazy capture around ``model.generate`` with a KV cache.

    python benchmarks/generation_memory.py            # a random Llama, 4 layers, about ten minutes on 2 cores
    python benchmarks/generation_memory.py --quick    # seconds

For each number of new tokens it captures one greedy ``generate`` run twice: with the keys
of the cache kept once per layer (``visualizer._generation.share_keys``, the default) and
with every step keeping its own keys (``share_keys`` replaced by a pass-through, what the
capture did before), and prints ``maps.kept_bytes()`` of both. Then the time of
``generate`` plain, captured with shared keys, and captured with per-step keys, in rounds
interleaved and shuffled, as ratios of medians to the plain run (compare ratios within one
run only: the machine is shared and noisy).
"""

from __future__ import annotations

import random
import statistics
import sys
import time

import torch

import visualizer._maps as maps_module
from visualizer import capture_attention


def _model(layers: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=1000,
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=layers,
        num_attention_heads=8,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        pad_token_id=0,
    )
    return LlamaForCausalLM(config).eval()


def _generate(model, ids, new_tokens: int):
    with torch.no_grad():
        return model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            do_sample=False,
            pad_token_id=0,
        )


def _per_step(store, recipe):
    return store, recipe


def _captured(model, ids, new_tokens: int, shared: bool):
    original = maps_module.share_keys
    if not shared:
        maps_module.share_keys = _per_step
    try:
        with capture_attention(model) as maps:
            _generate(model, ids, new_tokens)
    finally:
        maps_module.share_keys = original
    return maps


def main(quick: bool) -> None:
    model = _model(2 if quick else 4)
    ids = torch.randint(1, 1000, (2, 16 if quick else 64))
    steps = (8, 16) if quick else (32, 64, 128)
    print(
        f"Llama, hidden 256, {model.config.num_hidden_layers} layers, 8 heads (2 kv), batch 2, "
        f"prompt {ids.shape[1]}, float32"
    )
    print("| new tokens | kept bytes, shared keys | kept bytes, per-step keys | ratio |")
    print("| ---: | ---: | ---: | ---: |")
    for new_tokens in steps:
        shared = _captured(model, ids, new_tokens, True).kept_bytes()
        per_step = _captured(model, ids, new_tokens, False).kept_bytes()
        print(f"| {new_tokens} | {shared:,} | {per_step:,} | {per_step / shared:.1f}x |")
    new_tokens, rounds = steps[-1], 3 if quick else 5
    variants = {
        "plain generate": lambda: _generate(model, ids, new_tokens),
        "captured, shared keys": lambda: _captured(model, ids, new_tokens, True),
        "captured, per-step keys": lambda: _captured(model, ids, new_tokens, False),
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    for run in variants.values():  # warm-up
        run()
    for _ in range(rounds):
        order = list(variants)
        random.shuffle(order)
        for name in order:
            start = time.perf_counter()
            variants[name]()
            times[name].append(time.perf_counter() - start)
    base = statistics.median(times["plain generate"])
    print(f"\ntime of generate, {new_tokens} new tokens, median of {rounds} interleaved rounds")
    print("| variant | ratio of medians | seconds, median |")
    print("| --- | ---: | ---: |")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| {name} | {median / base:.2f}x | {median:.3f} |")


if __name__ == "__main__":
    main("--quick" in sys.argv)
