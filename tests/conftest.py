"""Shared fixtures: a fresh, isolated get_local for each test."""

import pytest

from visualizer import get_local as global_get_local
from visualizer._get_local import GetLocal


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
    global_get_local.deactivate()
    for func in list(global_get_local._captured):
        global_get_local.undo(func)
    global_get_local.configure(store="numpy", max_records=None)
    global_get_local.clear()
    global_get_local._owners.clear()  # qualnames claimed by this test's modules: none carry over
