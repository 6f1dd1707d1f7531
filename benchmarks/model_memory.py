"""Memory of capture: the peak of one forward per variant, and resident memory over many forwards.

    >>> one_forward_memory(variant)              # in a fresh process: run via peak_memory(...)
    {'peak_increase': ..., 'maps_bytes': ..., 'peak_source': 'VmHWM'}
    >>> memory_loop(capture_variant, forwards=1000)
    {'samples': [(0, rss), (100, rss), ...], 'growth_last': ..., 'growth_max': ...}

Peak of one forward: each variant runs in its own fresh process (``peak_memory``), is
warmed up with one forward, and then measured over one more forward: the peak resident
set size during it minus the resident size just before it. Between the two, glibc's
``malloc_trim(0)`` hands what the warm-up freed back to the kernel, so that the measured
forward's allocations count again instead of reusing resident memory. The peak is the kernel's
high-water mark ``VmHWM`` (the process's own ``ru_maxrss``), reset just before the
forward by writing 5 to ``/proc/self/clear_refs``. Reading ``ru_maxrss`` itself would
not do: after ``exec`` it starts from the parent's high-water mark, here the benchmark
process with every model loaded, and model building can peak above the forward anyway.
Where ``clear_refs`` is not writable the peak since the process started is used, and
the result says so. Current RSS comes from ``/proc/self/statm``.
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import resource
import subprocess
import sys

__all__ = ["memory_loop", "memory_table", "one_forward_memory", "peak_memory", "rss_bytes"]

PAGE = os.sysconf("SC_PAGE_SIZE")
MB = 2**20


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE


def _release_free_memory() -> None:
    """Give freed heap memory back to the kernel (glibc), so the next forward's allocations show in RSS.

    Without this, what the warm-up forward freed stays resident in malloc's arenas, the
    measured forward reuses it, and its peak looks like zero.
    """
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        pass


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        return True
    except OSError:
        return False


def _peak_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # pragma: no cover - not Linux


def _nbytes(value) -> int:
    nbytes = getattr(value, "nbytes", None)  # numpy arrays, and tensors on torch >= 2.1
    return int(nbytes) if nbytes is not None else value.element_size() * value.nelement()


def one_forward_memory(variant) -> dict:
    """Peak RSS increase of one forward of ``variant`` after one warm-up, and what its maps retain."""
    variant.enter()
    try:
        variant.step()
        variant.reset()
        gc.collect()
        _release_free_memory()
        reset = _reset_peak()
        before = rss_bytes()
        variant.step()
        peak = _peak_bytes()
        maps = variant.maps() or []
        maps_bytes = sum(_nbytes(m) for m in maps)
        del maps
        variant.reset()
    finally:
        variant.leave()
    return {
        "peak_increase": peak - before,
        "maps_bytes": maps_bytes,
        "peak_source": "VmHWM" if reset else "VmHWM since process start (clear_refs not writable)",
    }


def peak_memory(script: str, config_id: str, keys: list) -> dict:
    """``{key: one_forward_memory(...)}``, each measured in a fresh ``python script --one-variant``."""
    results = {}
    for key in keys:
        command = [sys.executable, script, "--one-variant", config_id, key]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr.strip()[-2000:]}")
        results[key] = json.loads(done.stdout.strip().splitlines()[-1])
    return results


def memory_table(results: dict) -> str:
    """``results``: ``{key: {"label": ..., **one_forward_memory(...)}}``, in table order."""
    lines = [
        "| variant | peak RSS increase of one forward (MB) | captured maps retained (MB) |",
        "| --- | ---: | ---: |",
    ]
    for row in results.values():
        lines.append(f"| {row['label']} | {row['peak_increase'] / MB:.0f} | {row['maps_bytes'] / MB:.0f} |")
    sources = {row["peak_source"] for row in results.values()}
    if sources != {"VmHWM"}:
        lines.append(f"\nPeak measured as: {', '.join(sorted(sources))}.")
    return "\n".join(lines)


def memory_loop(variant, forwards: int, warmup: int = 10) -> dict:
    """Resident memory over ``forwards`` forwards of ``variant``, its maps dropped after each.

    RSS is sampled after ``warmup`` forwards (sample 0, the reference), then every tenth of
    the run (every 100 forwards for 1,000). Growth is relative to sample 0.
    """
    every = max(1, forwards // 10)
    variant.enter()
    try:
        for _ in range(warmup):
            variant.step()
            variant.reset()
        gc.collect()
        samples = [(0, rss_bytes())]
        for done in range(1, forwards + 1):
            variant.step()
            variant.reset()
            if done % every == 0:
                samples.append((done, rss_bytes()))
    finally:
        variant.leave()
    first = samples[0][1]
    return {
        "forwards": forwards,
        "warmup": warmup,
        "samples": samples,
        "growth_last": samples[-1][1] - first,
        "growth_max": max(rss for _, rss in samples) - first,
    }
