"""The dataset survey: inputs per second in 1 and 2 processes, and peak memory against the number of inputs.

    python benchmarks/bench_survey.py              # about 3 minutes on 2 cores
    python benchmarks/bench_survey.py --quick      # a few small runs: the smoke test

Speed: ``survey()`` of a random ViT-Ti/16 at 224 px (197 tokens, 12 layers, 3 heads; the default
measures, batch 8) over the same synthetic images, each variant in fresh processes:
1 process on 1 thread, 1 process on 2 threads, and 2 processes of 1 thread each under
``torchrun --standalone --nproc_per_node=2`` (gloo). The time is that of the ``survey()`` call
on rank 0 after a barrier (the reduction at its end included, model loading and imports not).

Memory: in a fresh process per count, a random ViT at 32 px (17 tokens) surveys ``n`` inputs
streamed from a generator (made one at a time, never held), batch 32, after a warm-up survey;
reported is the rise of the peak resident set (``VmHWM``, reset through ``clear_refs`` after a
``malloc_trim``) over what the process held before the call. Flat means the survey keeps
nothing per input. Timings are noisy on a shared machine: compare the ratios of one run.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def _model(size: int):
    import timm
    import torch

    torch.manual_seed(0)
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, img_size=size).eval()


def _stream(count: int, size: int):
    import torch

    generator = torch.Generator().manual_seed(1)
    for _ in range(count):
        yield torch.randn(3, size, size, generator=generator)


def speed(count: int) -> dict:
    import torch
    import torch.distributed as dist

    from visualizer import survey
    from visualizer._survey._distributed import join

    model = _model(224)
    images = list(_stream(count, 224))
    survey(model, images[:2], batch_size=2)  # warm-up (and the process group, under torchrun)
    rank, world = join()
    if world > 1:
        dist.barrier()
    start = time.perf_counter()
    result = survey(model, images, batch_size=8)
    seconds = time.perf_counter() - start
    return {
        "rank": rank,
        "processes": world,
        "threads": torch.get_num_threads(),
        "inputs": result.inputs,
        "seconds": seconds,
        "inputs_per_s": result.inputs / seconds,
        "distance_layer0_head0": float(result.mean("distance")[0, 0]),
    }


def _release_free_memory() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        pass


def _status(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")  # pragma: no cover - not Linux


def memory(count: int) -> dict:
    from visualizer import survey

    model = _model(32)
    survey(model, _stream(64, 32), batch_size=32)  # warm-up: every allocation size seen once
    gc.collect()
    _release_free_memory()
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")  # VmHWM := current RSS
    before = _status("VmRSS")
    start = time.perf_counter()
    result = survey(model, _stream(count, 32), batch_size=32)
    seconds = time.perf_counter() - start
    return {
        "inputs": result.inputs,
        "peak_rise_mib": (_status("VmHWM") - before) / 2**20,
        "seconds": seconds,
    }


def _environment(threads: int) -> dict:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": str(threads),
        "CUDA_VISIBLE_DEVICES": "",
    }


def _run(prefix: list[str], arguments: list[str], threads: int) -> list[dict]:
    command = [*prefix, str(Path(__file__).resolve()), *arguments]
    done = subprocess.run(command, capture_output=True, text=True, env=_environment(threads), timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="16 images; 100 and 1,000 inputs")
    parser.add_argument("--speed", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--memory", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.speed:
        print(json.dumps(speed(args.speed)))
        return
    if args.memory:
        print(json.dumps(memory(args.memory)))
        return
    images, counts = (16, [100, 1000]) if args.quick else (96, [100, 1000, 10000])
    python = [sys.executable]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    variants = {
        "1 process, 1 thread": (python, 1),
        "1 process, 2 threads": (python, 2),
        "2 processes (torchrun, gloo), 1 thread each": (torchrun, 1),
    }
    print(f"## Survey speed: {images} images, ViT-Ti/16 at 224 px, batch 8\n")
    print("| variant | inputs | seconds | inputs/s | vs 1 process, 1 thread |")
    print("| --- | ---: | ---: | ---: | ---: |")
    base = None
    for label, (prefix, threads) in variants.items():
        reports = _run(prefix, ["--speed", str(images)], threads)
        first = next(r for r in reports if r["rank"] == 0)
        if len({round(r["distance_layer0_head0"], 9) for r in reports}) != 1:
            raise RuntimeError(f"{label}: the ranks' results differ: {reports}")
        base = base or first["inputs_per_s"]
        print(
            f"| {label} | {first['inputs']} | {first['seconds']:.2f} | {first['inputs_per_s']:.1f} | "
            f"{first['inputs_per_s'] / base:.2f}x |"
        )
    print("\n## Survey memory: a ViT at 32 px over streamed inputs, batch 32\n")
    print("| inputs | peak RSS rise (MiB) | seconds | inputs/s |")
    print("| ---: | ---: | ---: | ---: |")
    for count in counts:
        (report,) = _run(python, ["--memory", str(count)], 1)
        print(
            f"| {report['inputs']:,} | {report['peak_rise_mib']:.1f} | {report['seconds']:.1f} | "
            f"{report['inputs'] / report['seconds']:.0f} |"
        )


if __name__ == "__main__":
    main()
