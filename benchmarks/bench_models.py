"""End-to-end cost of capturing attention maps, on real model sizes, on the CPU.

    python benchmarks/bench_models.py                       # everything: 30 to 40 minutes on 2 cores
    python benchmarks/bench_models.py --only vit            # the ViTs (or: --only bert)
    python benchmarks/bench_models.py --rounds 20           # more interleaved rounds than the default 10
    python benchmarks/bench_models.py --quick               # about a minute: the CI smoke test
    python benchmarks/bench_models.py --json benchmarks/results/models.json

Models, at batch 1 and 8 (see ``model_configs``): the offline DINOv2 ViT-S/14 and a
random timm ViT-B/16 at 224 px; the offline MiniLM-L6 and a random BERT-base
(``BertConfig()``) at 128 and 512 tokens. Every forward runs under ``torch.no_grad()``,
in eval mode, with torch's default number of threads. The variants, each one forward pass
(``variants_timm``, ``variants_bert``):

1. baseline: the default fused kernel (timm ``fused_attn=True``) or ``sdpa`` (transformers);
2. the eager forward, capturing nothing;
3. the global ``get_local`` on the library's own attention function, in place;
4. ``with capture_attention(model) as maps: model(x)``, entered and left per forward;
5. forward hooks, the way hook-based tools capture;
6. transformers' eager ``output_attentions=True`` (for the ViTs, transformers' own
   implementation of the architecture);
7. the pip package ``anycapture`` 0.1.4 on a copy of the same function.

Before timing, each configuration runs every variant once and fails loudly unless each
capture returned one map per layer of the expected shape (``model_checks``). Times are
ratios to the baseline over interleaved rounds, shuffled per round (``model_timing``).
Then: the peak memory of one forward per variant, each in a fresh process, on the two
largest configurations, and resident memory over 1,000 ``capture_attention`` forwards
(``model_memory``). The machine may be shared and noisy: compare ratios within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import shlex
import statistics
import sys
import time

import variants_bert
import variants_timm
from model_checks import check_variants
from model_configs import FULL_IDS, MEMORY_IDS, QUICK_IDS, build_config
from model_memory import MB, memory_loop, memory_table, one_forward_memory, peak_memory
from model_timing import forwards_per_measurement, measure, summarise, table
from variant import KEYS

SCRIPT = str(pathlib.Path(__file__).resolve())
TARGETS = (("eager", 1.05), ("baseline", 1.10))  # capture_attention on ViT-B/16, at most this times that


def make_variants(config, keys=KEYS) -> list:
    """The variants ``keys`` for ``config``; if one cannot be built, those already built are closed."""
    builders = (variants_timm if config.family == "timm" else variants_bert).VARIANTS
    built = []
    try:
        for key in keys:
            built.append(builders[key](config))
    except BaseException:
        close_variants(built)
        raise
    return built


def close_variants(variants: list) -> None:
    for variant in reversed(variants):
        variant.close()


def time_config(config_id: str, rounds: int, min_seconds: float) -> dict:
    """Check, then time every variant of one configuration; prints and returns its table."""
    config = build_config(config_id)
    variants = make_variants(config)
    try:
        check_variants(config, variants)
        number = forwards_per_measurement(variants[0], min_seconds)
        times = measure(variants, rounds, number)
    finally:
        close_variants(variants)
    stats = summarise(times)
    print(f"\n### {config.label} (`{config_id}`)\n")
    print(
        f"{rounds} rounds, {number} forward(s) per measurement; every capture checked: "
        f"{config.layers} maps of {config.map_shape}.\n"
    )
    print(table(variants, stats), flush=True)
    labels = {variant.key: variant.label for variant in variants}
    return {
        "label": config.label,
        "rounds": rounds,
        "forwards_per_measurement": number,
        "labels": labels,
        "seconds": times,
        "stats": stats,
    }


def target_verdicts(configs: dict) -> list[dict]:
    """The issue's targets on ViT-B/16: capture_attention at most 1.05x eager and 1.10x the baseline."""
    return [
        _verdict(config_id, result["seconds"], other, limit)
        for config_id, result in configs.items()
        if config_id.startswith("vitb16")
        for other, limit in TARGETS
    ]


def _verdict(config_id: str, seconds: dict, other: str, limit: float) -> dict:
    capture = seconds["capture_attention"]
    ratios = {
        "medians": statistics.median(capture) / statistics.median(seconds[other]),
        "minimums": min(capture) / min(seconds[other]),
    }
    met = [name for name, ratio in ratios.items() if ratio <= limit]
    verdict = "yes" if len(met) == 2 else f"on {met[0]} only" if met else "no"
    return {
        "config": config_id,
        "versus": other,
        "limit": limit,
        "ratio_of_medians": ratios["medians"],
        "ratio_of_minimums": ratios["minimums"],
        "met": verdict,
    }


def targets_table(verdicts: list) -> str:
    if not verdicts:
        return "ViT-B/16 was not measured in this run."
    lines = [
        "| config | target | ratio of medians | ratio of minimums | met |",
        "| --- | --- | ---: | ---: | --- |",
    ]
    for row in verdicts:
        lines.append(
            f"| `{row['config']}` | capture_attention <= {row['limit']:.2f}x {row['versus']} "
            f"| {row['ratio_of_medians']:.3f}x | {row['ratio_of_minimums']:.3f}x | {row['met']} |"
        )
    return "\n".join(lines)


def header(argv: list, rounds: int) -> dict:
    import timm
    import torch
    import transformers

    versions = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "transformers": transformers.__version__,
    }
    return {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "machine": f"{_cpu_model()}, {os.cpu_count()} cores, {_memory_gib()} GiB, "
        f"{platform.system()} {platform.release()}",
        "torch_threads": torch.get_num_threads(),
        "versions": versions,
        "command": shlex.join([_shown(sys.executable), _shown(SCRIPT), *argv]),
        "rounds": rounds,
    }


def _shown(path: str) -> str:
    """``path`` relative to the working directory when it lies below it, as one would type it."""
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _memory_gib() -> str:
    try:
        with open("/proc/meminfo") as meminfo:
            return f"{int(meminfo.readline().split()[1]) / 2**20:.0f}"  # MemTotal, in kB
    except (OSError, ValueError, IndexError):
        return "?"


def print_header(info: dict) -> None:
    versions = ", ".join(f"{name} {version}" for name, version in info["versions"].items())
    print("# End-to-end attention capture benchmark (CPU)\n")
    print(f"- date: {info['date']}\n- machine: {info['machine']}; torch threads: {info['torch_threads']}")
    print(f"- versions: {versions}\n- command: `{info['command']}`")
    print("- ratios are to the baseline, over interleaved rounds shuffled per round", flush=True)


def memory_section(ids: list, quick: bool) -> dict:
    """Peak memory of one forward per variant, each in a fresh process."""
    results = {}
    for config_id in ids:
        keys = ("capture_attention",) if quick else KEYS  # quick: one fresh process, to exercise the path
        results[config_id] = peak_memory(SCRIPT, config_id, list(keys))
        print(f"\n### Peak memory: {build_config(config_id).label} (`{config_id}`)\n")
        print(memory_table(results[config_id]), flush=True)
    return results


def loop_section(forwards: int) -> dict:
    config = build_config("dinov2-b1")
    variants = make_variants(config, ("capture_attention",))
    try:
        result = memory_loop(variants[0], forwards)
    finally:
        close_variants(variants)
    samples = ", ".join(f"{rss / MB:.0f}" for _, rss in result["samples"])
    print(
        f"\n### Memory over {forwards} forwards of capture_attention, maps dropped after each "
        f"({config.label})\n"
    )
    print(
        f"RSS (MB) after {result['warmup']} warm-up forwards, then every {result['samples'][1][0]} "
        f"forwards: {samples}"
    )
    print(
        f"growth, first to last sample: {result['growth_last'] / MB:+.1f} MB; "
        f"largest growth: {result['growth_max'] / MB:+.1f} MB",
        flush=True,
    )
    return result


def run_one_variant(config_id: str, key: str) -> dict:
    """The hidden ``--one-variant`` mode: the peak memory of one variant, in this fresh process."""
    config = build_config(config_id)
    variants = make_variants(config, (key,))
    try:
        return {"label": variants[0].label, **one_forward_memory(variants[0])}
    finally:
        close_variants(variants)


def parse(argv: list) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="about a minute, for the CI smoke test")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 10; quick: 2)")
    parser.add_argument("--only", choices=("vit", "bert"), help="only the ViTs or only the BERTs")
    parser.add_argument("--json", type=pathlib.Path, help="also write every result to this JSON file")
    parser.add_argument("--one-variant", nargs=2, metavar=("CONFIG", "VARIANT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rounds is not None and args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    if args.one_variant and args.one_variant[1] not in KEYS:
        parser.error(f"--one-variant: unknown variant {args.one_variant[1]!r}; known: {', '.join(KEYS)}")
    return args


def main(argv=None) -> None:
    import torch

    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse(argv)
    _quiet_transformers()
    if args.one_variant:
        with torch.no_grad():
            print(json.dumps(run_one_variant(*args.one_variant)))
        return
    rounds = args.rounds or (2 if args.quick else 10)
    results = {"header": header(argv, rounds)}
    print_header(results["header"])
    with torch.no_grad():
        results.update(run(args, rounds))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))
        print(f"\nWrote {args.json}")


def run(args: argparse.Namespace, rounds: int) -> dict:
    """Timing tables, the targets, peak memory and the memory loop, printed as they come."""
    ids = [i for i in (QUICK_IDS if args.quick else FULL_IDS) if args.only in (None, _family_of(i))]
    configs = {config_id: time_config(config_id, rounds, 0.05 if args.quick else 0.25) for config_id in ids}
    targets = target_verdicts(configs)
    print(f"\n### Targets on ViT-B/16\n\n{targets_table(targets)}", flush=True)
    memory_ids = ids[:1] if args.quick else [i for i in MEMORY_IDS if i in ids]
    results = {"configs": configs, "targets": targets, "peak_memory": memory_section(memory_ids, args.quick)}
    if args.only != "bert":
        results["memory_loop"] = loop_section(20 if args.quick else 1000)
    return results


def _family_of(config_id: str) -> str:
    return "vit" if config_id.startswith(("dinov2", "vitb16")) else "bert"


def _quiet_transformers() -> None:
    """No progress bar on stderr for every model built."""
    from transformers.utils import logging

    logging.disable_progress_bar()


if __name__ == "__main__":
    main()
