"""What the demos share to train and run their small models reproducibly.

>>> with intra_op_threads(1):       # the float sums in a fixed order; restored afterwards
...     train()
>>> with evaluating(model):         # eval mode and no_grad, the model's mode restored afterwards
...     model(x)
>>> is_int(3), is_int(True)
(True, False)
>>> check_int(count, "count", 1)    # count as an int; a TypeError or ValueError that names it
>>> check_ints(settings, {"seed": None, "steps": 0})   # in a settings' __post_init__
>>> check_run(threads, progress)    # the keywords of train_* and load_*_demo, before any training
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Mapping

import numpy as np
import torch

__all__ = [
    "check_int",
    "check_ints",
    "check_positive_numbers",
    "check_run",
    "evaluating",
    "intra_op_threads",
    "is_int",
]


@contextlib.contextmanager
def evaluating(model: torch.nn.Module):
    """``model`` in eval mode under ``torch.no_grad()``; its training mode is put back after."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


@contextlib.contextmanager
def intra_op_threads(threads: int | None):
    """torch's intra-op thread count set to ``threads`` (None: left as it is), restored after."""
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def is_int(value) -> bool:
    """An int or numpy integer, and not a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def check_int(value, name: str, minimum: int | None = None) -> int:
    """``value`` as an int; it must be an int or numpy integer (not a bool) of at least ``minimum``
    (None: any)."""
    if not is_int(value):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}: {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return int(value)


def check_ints(settings, minimums: Mapping[str, int | None]) -> None:
    """Each named field of ``settings`` must pass :func:`check_int` with its minimum (None: any)."""
    for name, minimum in minimums.items():
        check_int(getattr(settings, name), name, minimum)


def check_positive_numbers(settings, names: Iterable[str]) -> None:
    """Each named field of ``settings`` must be a positive finite int or float (not a bool)."""
    for name in names:
        value = getattr(settings, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
            raise ValueError(f"{name} must be a positive finite number, got {value!r}")


def check_run(threads, progress) -> None:
    """The keywords of a training run: ``threads`` a positive int or None, ``progress`` a callable or None."""
    if threads is not None and (not is_int(threads) or threads < 1):
        raise ValueError(
            f"threads must be a positive int or None (keep torch's current count), got {threads!r}"
        )
    if progress is not None and not callable(progress):
        raise TypeError(
            f"progress must be a callable progress(step, loss) or None, got {type(progress).__name__}"
        )
