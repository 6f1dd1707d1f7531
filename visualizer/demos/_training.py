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
    "check_method",
    "check_positive_numbers",
    "check_run",
    "check_token_ids",
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


def check_method(method) -> str:
    """``method``, one of :data:`visualizer.relevance.METHODS` or ``"random"`` (the demos' chance level)."""
    from visualizer.relevance import METHODS

    if not isinstance(method, str) or method not in (*METHODS, "random"):
        raise ValueError(f"method must be one of {', '.join(METHODS)} or 'random', not {method!r}")
    return method


def check_token_ids(
    ids, name: str, ndims: tuple[int, ...], *, positions: int, largest: int, bounds: str, make: str, item: str
) -> torch.Tensor:
    """``ids`` as int64, checked: an integer tensor of ``ndims`` dimensions, not empty, at most
    ``positions`` long, its values in 0..``largest`` (said as ``bounds`` in the error). ``make`` says
    how to make ids, ``item`` what one row is ("sentence", "sequence")."""
    if not isinstance(ids, torch.Tensor) or ids.dtype not in (torch.int64, torch.int32):
        kind = f"a {ids.dtype} tensor" if isinstance(ids, torch.Tensor) else type(ids).__name__
        raise TypeError(
            f"{name} must be an integer torch tensor of token ids, got {kind}; make one with {make}"
        )
    shapes = " or ".join({1: "(length,)", 2: "(batch, length)"}[d] for d in ndims)
    if ids.ndim not in ndims or ids.numel() == 0 or ids.shape[-1] > positions:
        raise ValueError(
            f"{name} must have shape {shapes}, not empty, with length <= the model's "
            f"{positions} positions, got {tuple(ids.shape)}"
            + (f"; for one {item} pass x[None]" if ids.ndim == 1 and 1 not in ndims else "")
        )
    if ids.min() < 0 or ids.max() > largest:
        raise ValueError(
            f"{name} token ids must lie in {bounds}, got values from {int(ids.min())} to {int(ids.max())}"
        )
    return ids.long()
