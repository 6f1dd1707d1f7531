"""What the demos share to train and run their small models reproducibly.

>>> with intra_op_threads(1):       # the float sums in a fixed order; restored afterwards
...     train()
>>> with evaluating(model):         # eval mode and no_grad, the model's mode restored afterwards
...     model(x)
>>> is_int(3), is_int(True)
(True, False)
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch

__all__ = ["evaluating", "intra_op_threads", "is_int"]


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
