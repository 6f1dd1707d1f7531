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


READY = (
    "(() => { const r = document.querySelector('.tvz');"
    " return r && (r.dataset.ready || r.dataset.error); })()"
)


def open_view(page, path):
    """Open a saved view in ``page`` and wait until it is drawn (or fail with its error)."""
    page.goto(path.as_uri())
    assert page.wait_for(READY) == "1", page.evaluate("document.querySelector('.tvz').dataset.error")


def canvas_digest(page, selector, index=0, context=None):
    """A checksum of a canvas's pixels: changes whenever what it shows changes."""
    return page.evaluate(
        f"(() => {{ const c = document.querySelectorAll('{selector}')[{index}];"
        "const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        "let h = 0; for (let i = 0; i < d.length; i++) h = (h * 31 + d[i]) >>> 0; return h; })()",
        context,
    )


def state(page, context=None, selector=".tvz"):
    """The dataset of a view's root (or of ``selector``): the state a view publishes for tests."""
    return page.evaluate(f"({{...document.querySelector('{selector}').dataset}})", context)
