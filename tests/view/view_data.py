"""Helpers for the view tests: softmax maps with structure, and readers for a view's HTML."""

import html
import json
import re

import numpy as np


def softmax_maps(shape, seed=0, sharpness=3.0):
    """Random attention weights of ``shape`` (..., queries, keys): rows are softmax distributions."""
    logits = np.random.default_rng(seed).normal(size=shape) * sharpness
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    return (weights / weights.sum(-1, keepdims=True)).astype(np.float32)


def embedded(document: str, name: str) -> str:
    """The text of the ``<script class="name">`` block of a view's HTML."""
    found = re.findall(rf'<script type="[^"]+" class="{name}">(.*?)</script>', document, flags=re.S)
    assert len(found) == 1, f"expected one {name} block, found {len(found)}"
    return found[0]


def config_of(document: str) -> dict:
    return json.loads(embedded(document, "tvz-config"))


def srcdoc_of(iframe_html: str) -> str:
    """The document inside an ``<iframe srcdoc="...">``, unescaped as a browser would."""
    found = re.search(r'srcdoc="([^"]*)"', iframe_html)
    assert found, "no srcdoc attribute"
    return html.unescape(found.group(1))
