"""Fixtures for the view tests: attention maps of text and ViT shapes, and a picture."""

import numpy as np
import pytest
from view_data import softmax_maps


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
