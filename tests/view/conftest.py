"""Fixtures for the view tests: attention maps of text and ViT shapes, a picture, and a browser.

``browser`` is one headless Chromium per test module (skipped when none is installed, unless
``VISUALIZER_REQUIRE_BROWSER=1``); ``page`` a fresh tab in it, 1000 x 900 CSS pixels unless the
module sets ``PAGE_SIZE = (width, height)``.
"""

import os

import numpy as np
import pytest
from view_browser import Chromium, find_chromium
from view_data import softmax_maps


@pytest.fixture(scope="module")
def browser():
    binary = find_chromium()
    if binary is None:
        reason = "chromium is not installed (Debian: apt-get install -y chromium)"
        if os.environ.get("VISUALIZER_REQUIRE_BROWSER") == "1":
            pytest.fail(f"VISUALIZER_REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)
    with Chromium.launch(binary) as chromium:
        yield chromium


@pytest.fixture
def page(browser, request):
    width, height = getattr(request.module, "PAGE_SIZE", (1000, 900))
    page = browser.new_page(width=width, height=height)
    yield page
    browser.send("Target.closeTarget", {"targetId": page.target})
    browser.pages.remove(page)


@pytest.fixture
def maps():
    """Two layers of a batch of 2, 3 heads, 5 tokens: per-layer (batch, heads, queries, keys)."""
    return [softmax_maps((2, 3, 5, 5), seed=layer) for layer in range(2)]


@pytest.fixture
def vit_maps():
    """Three layers, 2 heads, CLS + a 3x4 grid: per-layer (1, heads, 13, 13)."""
    return [softmax_maps((1, 2, 13, 13), seed=10 + layer) for layer in range(3)]


@pytest.fixture
def picture():
    """A 30x40 RGB picture (rows x cols), not square, so rows and columns cannot be confused."""
    y, x = np.mgrid[0:30, 0:40]
    return np.stack([x * 6, y * 8, (x + y) * 3], axis=-1).astype(np.uint8)
