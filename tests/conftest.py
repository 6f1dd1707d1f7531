"""Shared fixtures: a fresh, isolated get_local for each test."""

import pytest

from visualizer import get_local as global_get_local
from visualizer._core import GetLocal


@pytest.fixture
def gl():
    """A private GetLocal, so tests cannot leak capture state into each other."""
    instance = GetLocal()
    yield instance
    instance.deactivate()


@pytest.fixture
def public_get_local():
    """The real ``visualizer.get_local``, restored to inactive and empty afterwards."""
    yield global_get_local
    global_get_local.reset()  # nothing captured, no qualname claimed: nothing carries over
