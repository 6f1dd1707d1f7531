"""Interleaved rounds of forward passes, and their ratios to the baseline as a markdown table.

    >>> number = forwards_per_measurement(variants[0], min_seconds=0.25)
    >>> times = measure(variants, rounds=10, number=number)     # {key: [seconds per forward, per round]}
    >>> print(table(variants, summarise(times)))

Every round runs every variant once, in an order shuffled per round, so drift on a
shared machine hits all variants alike. A measurement is ``number`` forwards in a row
(1 for large models; more for small ones, so a measurement is not a few milliseconds of
timer noise), each followed by the variant's ``reset`` outside the timed region.
"""

from __future__ import annotations

import math
import random
import statistics
import time

__all__ = ["forwards_per_measurement", "interleaved", "measure", "summarise", "table"]


def forwards_per_measurement(variant, min_seconds: float) -> int:
    """How many forwards of ``variant`` (the baseline) last at least ``min_seconds``."""
    variant.enter()
    try:
        started = time.perf_counter()
        variant.step()
        once = time.perf_counter() - started
        variant.reset()
    finally:
        variant.leave()
    return max(1, math.ceil(min_seconds / max(once, 1e-6)))


def measure(variants: list, rounds: int, number: int, seed: int = 0) -> dict:
    """``{key: [seconds per forward in each round]}``, over ``rounds`` interleaved rounds."""
    times = {variant.key: [] for variant in variants}
    order = list(variants)
    shuffle = random.Random(seed)
    for _ in range(rounds):
        shuffle.shuffle(order)
        for variant in order:
            times[variant.key].append(_one_measurement(variant, number))
    return times


def interleaved(runs: dict, rounds: int) -> dict:
    """``{key: [seconds of each round]}`` of plain functions ``{key: run}``: each run once as a
    warm-up, then ``rounds`` rounds of every run once, in an order shuffled per round (``random``'s
    global generator, which the caller seeds)."""
    times: dict = {key: [] for key in runs}
    for run in runs.values():
        run()
    for _ in range(rounds):
        order = list(runs)
        random.shuffle(order)
        for key in order:
            started = time.perf_counter()
            runs[key]()
            times[key].append(time.perf_counter() - started)
    return times


def _one_measurement(variant, number: int) -> float:
    elapsed = 0.0
    variant.enter()
    try:
        for _ in range(number):
            started = time.perf_counter()
            variant.step()
            elapsed += time.perf_counter() - started
            variant.reset()
    finally:
        variant.leave()
    return elapsed / number


def summarise(times: dict) -> dict:
    """Per variant: ratio of medians and of minimums to the baseline, and the median in ms."""
    base = times["baseline"]
    return {
        key: {
            "ratio_of_medians": statistics.median(values) / statistics.median(base),
            "ratio_of_minimums": min(values) / min(base),
            "median_ms": statistics.median(values) * 1e3,
        }
        for key, values in times.items()
    }


def table(variants: list, stats: dict) -> str:
    lines = ["| variant | ratio of medians | ratio of minimums | ms median |", "| --- | ---: | ---: | ---: |"]
    for variant in variants:
        row = stats[variant.key]
        lines.append(
            f"| {variant.label} | {row['ratio_of_medians']:.2f}x | {row['ratio_of_minimums']:.2f}x "
            f"| {row['median_ms']:.1f} |"
        )
    return "\n".join(lines)
