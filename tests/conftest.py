"""Shared fixtures: a fresh, isolated get_local for each test.

No model hub can be reached from CI, and huggingface_hub retries an unreachable hub for a long
time: the whole suite runs with the hub kept out, set here before anything imports
huggingface_hub (it reads the variable once, at import). Tests of the online paths unset it in
subprocesses of their own.
"""

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import pytest

from visualizer import get_local as global_get_local

if os.environ.get("VISUALIZER_TEST_INSTALLED") == "1":  # .ci/run's wheel check: the wheel, not the checkout
    import visualizer

    assert "site-packages" in visualizer.__file__, f"testing {visualizer.__file__}, not the installed wheel"
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
