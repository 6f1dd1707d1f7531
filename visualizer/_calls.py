"""How the interventions and the explanations call a model on the inputs a user gives them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["run"]


def run(model, inputs) -> Any:
    """``model(**inputs)`` for a dict of keyword arguments, ``model(*inputs)`` for a tuple of
    positional ones, else ``model(inputs)``."""
    if isinstance(inputs, Mapping):
        return model(**inputs)
    if isinstance(inputs, tuple):
        return model(*inputs)
    return model(inputs)
