"""The text view and the neuron view in headless Chromium: real mouse input changes what is shaded.

What is shaded must be what Python decodes from the same payload (``decode_rows``, written
without the browser's code), and the neuron view's numbers must be those numpy computes from
the captured queries and keys. Skipped without Chromium unless VISUALIZER_REQUIRE_BROWSER=1.
"""

import numpy as np
import pytest
import torch
from tiny_models import tiny_llama
from view_data import config_of, embedded, open_view, softmax_maps, state

from visualizer import capture_attention
from visualizer.view import neuron_view, text_view
from visualizer.view._topk_codec import decode_rows

ROOT = "document.querySelector('.tvz')"
PAGE_SIZE = (1000, 800)  # (width, height) of the shared page fixture
WORDS = ["The", "Ġcat", "Ġsat", "Ġon", "Ġthe", "Ġmat", ".", "Ċ", "ĠIt", "Ġpurred"]


def shown(page):
    return np.array(page.evaluate(f"Array.from({ROOT}.tvzShown || [])"))


def shaded(page, index):
    """Whether token ``index`` has a visible background (computed style: any alpha but 0)."""
    color = page.evaluate(f"getComputedStyle(document.querySelectorAll('.tvz-tok')[{index}]).backgroundColor")
    return not color.replace(" ", "").endswith(("/0)", ",0)"))


def causal_maps(layers, heads, tokens, seed=0):
    out = []
    for layer in range(layers):
        maps = softmax_maps((1, heads, tokens, tokens), seed=seed + layer) * np.tril(
            np.ones((tokens, tokens))
        )
        out.append((maps / maps.sum(-1, keepdims=True)).astype(np.float32))
    return out


def decoded(view):
    config = config_of(view.html)
    layers, heads, queries, keys = config["maps"]["shape"]
    rows = decode_rows(
        embedded(view.html, "tvz-data"), config["maps"], np.tile(np.arange(queries), layers * heads)
    )
    return rows.reshape(layers, heads, queries, keys)


def test_text_view_hover_click_direction_head_and_layer(page, tmp_path):
    tokens = [WORDS[i % len(WORDS)] for i in range(30)]
    view = text_view(causal_maps(2, 3, 30), tokens, keep=4, bin_width=8)
    weights = decoded(view)
    open_view(page, view.save(tmp_path / "text.html"))
    assert state(page)["focus"] == "" and state(page)["layer"] == "1" and state(page)["head"] == "mean"
    assert page.evaluate("document.querySelectorAll('.tvz-tok').length") == 30
    assert page.evaluate("document.querySelectorAll('.tvz-tok')[7].textContent") == "\u21b5"
    assert not shaded(page, 3)

    # Hover token 12: its row (mean over heads), as Python decodes it, shades the tokens up to it.
    # The text must not move under the pointer when the readout above it changes.
    top = "document.querySelector('.tvz-prose').getBoundingClientRect().top"
    before = page.evaluate(top)
    page.hover_until(*page.center_of(".tvz-tok", 12), f"{ROOT}.dataset.focus === '12'")
    assert page.evaluate(top) == before
    np.testing.assert_allclose(shown(page), weights[1, :, 12].mean(0), rtol=1e-5, atol=1e-7)
    strongest = int(weights[1, :, 12].mean(0).argmax())
    assert shaded(page, strongest)
    assert not shaded(page, 20)  # after the query: causal, no weight

    # A click pins it: moving to another token changes nothing.
    page.click(*page.center_of(".tvz-tok", 12))
    assert state(page)["pinned"] == "true"
    page.move_mouse(*page.center_of(".tvz-tok", 5))
    assert state(page)["focus"] == "12"

    # The direction switch: the tokens that attend to token 12 (its column), the later ones.
    page.click(*page.center_of(".tvz-direction .tvz-head[data-value='column']"))
    assert state(page)["direction"] == "column"
    np.testing.assert_allclose(shown(page), weights[1, :, :, 12].mean(0), rtol=1e-5, atol=1e-7)
    assert shaded(page, 20) and not shaded(page, 3)

    # One head, then another layer.
    page.click(*page.center_of(".tvz-head-buttons .tvz-head[data-value='2']"))
    assert state(page)["head"] == "2"
    np.testing.assert_allclose(shown(page), weights[1, 2, :, 12], rtol=1e-5, atol=1e-7)
    page.evaluate("document.querySelector('.tvz-layer').focus()")
    page.press("ArrowUp", "ArrowUp", 38)
    assert state(page)["layer"] == "0"
    np.testing.assert_allclose(shown(page), weights[0, 2, :, 12], rtol=1e-5, atol=1e-7)

    # A second click on the pinned token releases it; leaving the text clears the shading.
    page.click(*page.center_of(".tvz-tok", 12))
    assert state(page)["pinned"] == "false"
    page.move_mouse(990, 790)
    assert state(page)["focus"] == "" and shown(page).size == 0
    assert "4 strongest weights" in page.evaluate("document.querySelector('.tvz-kept').textContent")
    page.browser.pump(0.1)
    assert page.errors == []


def test_text_view_step_slider_replays_a_generation(page, tmp_path):
    tokens = [WORDS[i % len(WORDS)] for i in range(20)]  # 12 prompt + 8 generated; the last has no row
    view = text_view(causal_maps(1, 2, 19, seed=7), tokens, prompt_length=12)
    weights = decoded(view)
    open_view(page, view.save(tmp_path / "generation.html"))
    visible = "[...document.querySelectorAll('.tvz-tok')].filter(s => !s.hidden).length"
    assert state(page)["step"] == "8" and state(page)["focus"] == "18" and page.evaluate(visible) == 20
    assert page.evaluate("document.querySelectorAll('.tvz-tok.tvz-gen').length") == 8
    np.testing.assert_allclose(shown(page), weights[0, :, 18].mean(0)[:19], rtol=1e-5, atol=1e-7)

    page.evaluate(
        "(() => { const s = document.querySelector('.tvz-step'); s.value = '3';"
        "s.dispatchEvent(new Event('input')); })()"
    )
    assert state(page)["step"] == "3" and state(page)["focus"] == "14" and page.evaluate(visible) == 15
    np.testing.assert_allclose(shown(page), weights[0, :, 14].mean(0)[:15], rtol=1e-5, atol=1e-7)

    # The keyboard moves the slider too: step 2 shows the prompt and two generated tokens.
    page.evaluate("document.querySelector('.tvz-step').focus()")
    page.press("ArrowLeft", "ArrowLeft", 37)
    assert state(page)["step"] == "2" and state(page)["focus"] == "13" and page.evaluate(visible) == 14
    page.evaluate(
        "(() => { const s = document.querySelector('.tvz-step'); s.value = '0';"
        "s.dispatchEvent(new Event('input')); })()"
    )
    assert state(page)["focus"] == "11" and page.evaluate(visible) == 12
    page.browser.pump(0.1)
    assert page.errors == []


def _llama_maps():
    model = tiny_llama(initializer_range=0.2)
    model.set_attn_implementation("sdpa")
    with torch.no_grad(), capture_attention(model) as maps:
        model(input_ids=torch.randint(3, 100, (1, 8)))
    return maps


def test_neuron_view_click_selects_a_pair_and_shows_pythons_numbers(page, tmp_path):
    maps = _llama_maps()
    tokens = ["▁The", "▁quick", "▁brown", "▁fox", "▁jumps", "▁over", "▁the", "▁dog"]
    view = neuron_view(maps, tokens, layer=1, head=3)
    recipe = maps.recipe(1)
    q = recipe.query[0, 3].double().numpy()
    k = recipe.key[0, 1].double().numpy()
    scale = 1 / np.sqrt(q.shape[-1])
    open_view(page, view.save(tmp_path / "neuron.html"))
    assert state(page)["query"] == "7"

    page.click(*page.center_of(".tvz-nv-q .tvz-tok", 5))
    assert state(page)["query"] == "5"
    page.click(*page.center_of(".tvz-nv-k .tvz-tok", 2))  # the key was pinned: another click pins this one
    assert state(page)["key"] == "2" and state(page)["pinned"] == "true"
    logits = q[5] @ k.T * scale
    logits[6:] = -np.inf
    weights = np.exp(logits - logits.max())
    weights /= weights.sum()
    got = state(page)
    assert float(got["dot"]) == pytest.approx(q[5] @ k[2], rel=1e-6)
    assert float(got["logit"]) == pytest.approx(q[5] @ k[2] * scale, rel=1e-6)
    assert float(got["weight"]) == pytest.approx(weights[2], rel=1e-6)
    eager = maps[1][0, 3, 5, 2].item()
    assert float(got["weight"]) == pytest.approx(eager, abs=1e-6)
    cells = page.evaluate("[...document.querySelectorAll('.tvz-cells')[2].children].map(c => c.title)")
    products = [float(title.split(": ")[1]) for title in cells]
    np.testing.assert_allclose(products, q[5] * k[2], rtol=1e-4, atol=1e-6)

    # Release the pin, then hovering a key selects it; a masked key (after the query) gets weight 0.
    page.click(*page.center_of(".tvz-nv-k .tvz-tok", 2))
    assert state(page)["pinned"] == "false"
    page.hover_until(*page.center_of(".tvz-nv-k .tvz-tok", 7), f"{ROOT}.dataset.key === '7'")
    assert float(state(page)["weight"]) == 0 and state(page)["logit"] == "-Infinity"
    page.browser.pump(0.1)
    assert page.errors == []
