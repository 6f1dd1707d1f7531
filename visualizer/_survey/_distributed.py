"""The survey on several processes or machines, on torch.distributed (no engine of our own).

>>> rank, world = join()                      # (0, 1) in a plain process; torchrun's ranks otherwise
>>> total = all_sum(vector)                   # float64 numpy vector summed over the ranks
>>> everyone = all_gather(value)              # [rank 0's value, rank 1's, ...]

Under ``torchrun`` (its ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT`` are set)
the default process group is started here if the caller has not: NCCL when the process has
a CUDA device, gloo otherwise; it is ended when the process exits. A process without those
variables needs no set-up at all.
"""

from __future__ import annotations

import atexit
import os

__all__ = ["all_gather", "all_sum", "join", "leave"]

_STARTED = []  # the group this module started (and so may end)


def _dist():
    import torch.distributed as dist

    return dist if dist.is_available() else None


def join() -> tuple[int, int]:
    """(rank, world size): torchrun's when its variables are set, else (0, 1)."""
    dist = _dist()
    if dist is not None and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    if dist is None or "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return 0, 1
    if int(os.environ["WORLD_SIZE"]) == 1:
        return 0, 1
    import torch

    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group(backend=backend)
    _STARTED.append(backend)
    atexit.register(leave)
    return dist.get_rank(), dist.get_world_size()


def leave() -> None:
    """End the process group if :func:`join` started it."""
    dist = _dist()
    if _STARTED and dist is not None and dist.is_initialized():
        dist.destroy_process_group()
        _STARTED.clear()


def _active() -> bool:
    dist = _dist()
    return dist is not None and dist.is_initialized() and dist.get_world_size() > 1


def all_sum(vector):
    """``vector`` (float64 numpy) summed over every rank."""
    if not _active():
        return vector
    import numpy as np
    import torch
    import torch.distributed as dist

    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    tensor = torch.from_numpy(np.ascontiguousarray(vector, dtype=np.float64)).to(device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.cpu().numpy()


def all_gather(value) -> list:
    """Every rank's ``value`` (any picklable object), in rank order."""
    if not _active():
        return [value]
    import torch.distributed as dist

    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered
