"""The views in a real browser: headless Chromium over the DevTools protocol.

Each view is saved, opened from disk (file://), and must run without a console error or
exception. Then real input (mouse moves and clicks dispatched through DevTools) must
change what is shown, and what is shown must match the data: the weights printed in the
head view, the colours of the heat map. Skipped when Chromium is missing, unless
VISUALIZER_REQUIRE_BROWSER=1 (CI), where a missing browser fails.
"""

import json

import matplotlib
import numpy as np
import pytest
from view_data import READY, canvas_digest, config_of, embedded, open_view, softmax_maps

from visualizer.plots._colors import colormap_table
from visualizer.view import head_view, image_view
from visualizer.view._codec import decode_maps

TOP = tuple(colormap_table()[-1])  # the top colour of the colour map every figure uses


def state(page, context=None):
    return page.evaluate("({...document.querySelector('.tvz').dataset})", context)


TOKENS = ["[CLS]", "the", "cat", "sat", "on", "mat", "[SEP]"]


@pytest.fixture(scope="module")
def text_maps():
    return [softmax_maps((1, 4, 7, 7), seed=20 + layer) for layer in range(3)]


def test_head_view_hover_and_selection(page, text_maps, tmp_path):
    view = head_view(text_maps, TOKENS, layer=0, head="all", title="head view test")
    open_view(page, view.save(tmp_path / "head.html"))
    assert page.evaluate("document.title") == "head view test"
    assert state(page)["layer"] == "0" and state(page)["head"] == "all"
    shown_tokens = page.evaluate(
        "[...document.querySelectorAll('.tvz-left .tvz-text')].map(t => t.textContent)"
    )
    assert shown_tokens == TOKENS
    lines = canvas_digest(page, ".tvz-lines")
    before = page.screenshot()

    # Hover the query "cat": only its lines remain, and the keys show its weights (mean over heads).
    page.move_mouse(*page.center_of(".tvz-left .tvz-token", 2))
    assert state(page)["hover"] == "q2"
    assert canvas_digest(page, ".tvz-lines") != lines
    assert page.screenshot() != before
    decoded = decode_maps(embedded(view.html, "tvz-data"), config_of(view.html)["maps"])
    shown = page.evaluate("[...document.querySelectorAll('.tvz-right .tvz-weight')].map(w => w.textContent)")
    np.testing.assert_allclose([float(w) for w in shown], decoded[0, :, 2].mean(0), atol=6e-3)

    # Hover a key instead: the queries show how much each attends to it.
    page.move_mouse(*page.center_of(".tvz-right .tvz-token", 5))
    assert state(page)["hover"] == "k5"
    shown = page.evaluate("[...document.querySelectorAll('.tvz-left .tvz-weight')].map(w => w.textContent)")
    np.testing.assert_allclose([float(w) for w in shown], decoded[0, :, :, 5].mean(0), atol=6e-3)

    # Leave the tokens: all lines again.
    page.move_mouse(900, 800)
    assert state(page)["hover"] == ""
    assert canvas_digest(page, ".tvz-lines") == lines

    # Double-click head 2 (solo), then pick layer 1 with the keyboard: the lines change each time.
    page.double_click(*page.center_of(".tvz-head[data-head='2']"))
    assert state(page)["head"] == "2"
    head_two = canvas_digest(page, ".tvz-lines")
    assert head_two != lines
    page.evaluate("document.querySelector('.tvz-layer').focus()")
    page.press("ArrowDown", "ArrowDown", 40)
    assert state(page)["layer"] == "1"
    assert canvas_digest(page, ".tvz-lines") != head_two
    page.browser.pump(0.1)
    assert page.errors == []


def test_head_view_opens_where_asked_and_a_click_pins(page, text_maps, tmp_path):
    # By default: two thirds of the way down ((2 * 3) // 3 = layer 2) and one head, not all of them.
    open_view(page, head_view(text_maps, TOKENS).save(tmp_path / "default.html"))
    assert (state(page)["layer"], state(page)["head"]) == ("2", "0")
    assert page.evaluate("document.querySelector('.tvz-layer').value") == "2"
    view = head_view(text_maps, TOKENS, layers=[0, 2], include_heads=[1, 3], layer=2, head=3)
    open_view(page, view.save(tmp_path / "head.html"))
    assert (state(page)["layer"], state(page)["head"]) == ("1", "1")  # positions among the kept ones
    assert page.evaluate("document.querySelector('.tvz-layer').value") == "1"
    assert page.evaluate("document.querySelector('.tvz-head.tvz-on').dataset.head") == "1"
    everything = canvas_digest(page, ".tvz-lines")
    decoded = decode_maps(embedded(view.html, "tvz-data"), config_of(view.html)["maps"])

    def key_weights():
        shown = page.evaluate(
            "[...document.querySelectorAll('.tvz-right .tvz-weight')].map(w => w.textContent)"
        )
        return [float(w) for w in shown]

    # Click the query "cat": pinned; the highlight and its weights stay after the mouse leaves.
    page.click(*page.center_of(".tvz-left .tvz-token", 2))
    pinned = canvas_digest(page, ".tvz-lines")
    assert state(page)["pinned"] == "true" and state(page)["hover"] == "q2" and pinned != everything
    page.move_mouse(900, 800)
    page.move_mouse(*page.center_of(".tvz-left .tvz-token", 4))  # hovering another token changes nothing
    assert state(page)["hover"] == "q2" and canvas_digest(page, ".tvz-lines") == pinned
    np.testing.assert_allclose(key_weights(), decoded[1, 1, 2], atol=6e-3)  # layer 2, head 3, query 2
    assert page.evaluate("document.querySelectorAll('.tvz-pinned').length") == 1
    # A click on another token pins that one; a click on the pinned one releases it.
    page.click(*page.center_of(".tvz-left .tvz-token", 4))
    assert state(page)["hover"] == "q4" and state(page)["pinned"] == "true"
    page.click(*page.center_of(".tvz-left .tvz-token", 4))
    assert state(page)["pinned"] == "false"
    page.move_mouse(900, 800)
    assert state(page)["hover"] == "" and canvas_digest(page, ".tvz-lines") == everything
    page.browser.pump(0.1)
    assert page.errors == []


def test_image_view_opens_on_the_layer_and_head_asked(page, tmp_path):
    maps = [softmax_maps((1, 3, 16, 16), seed=40 + layer) for layer in range(12)]
    picture = np.full((60, 100, 3), 128, dtype=np.uint8)
    open_view(page, image_view(maps, picture, grid=(3, 5)).save(tmp_path / "default.html"))
    assert (state(page)["layer"], state(page)["head"]) == ("8", "mean")  # not the last layer
    view = image_view(maps, picture, grid=(3, 5), layers=[3, 5, 11], layer=5, head=2)
    open_view(page, view.save(tmp_path / "asked.html"))
    assert (state(page)["layer"], state(page)["head"]) == ("1", "2")
    caption = page.evaluate("document.querySelectorAll('.tvz-panel figcaption')[1].textContent")
    assert caption.endswith("layer 5 · head 2")
    # cmap= changes the colours: the brightest patch of the CLS row is drawn in viridis' top colour.
    view = image_view(maps, picture, grid=(3, 5), layer=5, head=2, cmap="viridis")
    open_view(page, view.save(tmp_path / "viridis.html"))
    row = decode_maps(embedded(view.html, "tvz-data"), config_of(view.html)["maps"])[5, 2, 0, 1:]
    top = int(row.argmax())
    viridis_top = [round(255 * c) for c in matplotlib.colormaps["viridis"](1.0)[:3]]
    assert heat_pixel(page, top // 5, top % 5)[:3] == pytest.approx(viridis_top, abs=3)


@pytest.fixture(scope="module")
def image_case():
    """CLS + a 3x5 grid (rows x cols), 2 layers, 3 heads; a 60x100 picture."""
    maps = [softmax_maps((1, 3, 16, 16), seed=30 + layer) for layer in range(2)]
    y, x = np.mgrid[0:60, 0:100]
    picture = np.stack([x * 2, y * 4, np.full_like(x, 90)], axis=-1).astype(np.uint8)
    return maps, picture


def patch_center(page, row, col, rows=3, cols=5, index=1, context=None):
    """Viewport coordinates of the middle of patch (row, col) on the index-th overlay."""
    box = page.evaluate(
        f"(() => {{ const r = document.querySelectorAll('.tvz-overlay')[{index}]"
        ".getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; })()",
        context,
    )
    return box[0] + (col + 0.5) * box[2] / cols, box[1] + (row + 0.5) * box[3] / rows


def heat_pixel(page, row, col, rows=3, cols=5, context=None):
    """The RGBA the heat overlay shows at the middle of patch (row, col)."""
    return page.evaluate(
        f"(() => {{ const c = document.querySelectorAll('.tvz-overlay')[1];"
        f"const x = Math.floor(({col} + 0.5) * c.width / {cols});"
        f"const y = Math.floor(({row} + 0.3) * c.height / {rows});"
        "return [...c.getContext('2d').getImageData(x, y, 1, 1).data]; })()",
        context,
    )


def test_image_view_hover_pin_and_selection(page, image_case, tmp_path):
    maps, picture = image_case
    view = image_view(maps, picture, grid=(3, 5))
    open_view(page, view.save(tmp_path / "image.html"))
    decoded = decode_maps(embedded(view.html, "tvz-data"), config_of(view.html)["maps"])
    assert state(page)["query"] == "0" and state(page)["head"] == "mean" and state(page)["layer"] == "1"
    assert page.evaluate("document.querySelector('.tvz-img').naturalWidth") == 100  # the picture decoded

    def check_heat(layer, heads, query):
        # The brightest patch of the row (patches only, after the CLS key) is drawn in the top colour.
        row = decoded[layer, heads, query, 1:].mean(0)
        top = int(row.argmax())
        assert heat_pixel(page, top // 5, top % 5)[:3] == pytest.approx(TOP, abs=3)
        low = int(row.argmin())
        assert sum(heat_pixel(page, low // 5, low % 5)[:3]) < sum(TOP) * row[low] / row[top] + 60

    check_heat(1, [0, 1, 2], 0)  # starts on the last layer, CLS row, mean of heads
    heat = canvas_digest(page, ".tvz-overlay", 1)
    before = page.screenshot()

    # Hover patch (row 2, col 1): token 1 + 2 * 5 + 1 = 12.
    page.move_mouse(*patch_center(page, 2, 1, index=0))
    assert state(page)["query"] == "12"
    assert canvas_digest(page, ".tvz-overlay", 1) != heat
    assert page.screenshot() != before
    check_heat(1, [0, 1, 2], 12)
    # The hovered patch is outlined on the query panel.
    assert canvas_digest(page, ".tvz-overlay", 0) != 0

    # Click pins it: moving elsewhere keeps the query until the next click.
    page.click(*patch_center(page, 0, 4))
    assert state(page)["query"] == "5" and state(page)["pinned"] == "true"
    page.move_mouse(*patch_center(page, 1, 1))
    assert state(page)["query"] == "5"
    page.click(*patch_center(page, 1, 1))
    assert state(page)["query"] == "7" and state(page)["pinned"] == "false"

    # Head 1, then layer 0, then the CLS button.
    page.click(*page.center_of(".tvz-head[data-head='1']"))
    page.move_mouse(*patch_center(page, 1, 1))
    assert state(page)["head"] == "1"
    check_heat(1, [1], 7)
    page.evaluate("document.querySelector('.tvz-layer').focus()")
    page.press("ArrowUp", "ArrowUp", 38)
    assert state(page)["layer"] == "0"
    check_heat(0, [1], 7)
    page.click(*page.center_of(".tvz-chip"))
    assert state(page)["query"] == "0" and state(page)["pinned"] == "true"
    check_heat(0, [1], 0)

    # The square-root scale changes the colours but keeps the brightest patch.
    linear = canvas_digest(page, ".tvz-overlay", 1)
    page.click(*page.center_of(".tvz-scale input"))
    assert state(page)["scale"] == "sqrt"
    assert canvas_digest(page, ".tvz-overlay", 1) != linear
    page.browser.pump(0.1)
    assert page.errors == []


def test_notebook_iframes_and_inline_fragments(page, text_maps, image_case, tmp_path):
    # What a notebook page holds after two outputs (the _repr_html_ iframes), plus the same
    # head view twice inline: all four must run, independently.
    maps, picture = image_case
    text, image = head_view(text_maps, TOKENS), image_view(maps, picture, grid=(3, 5))
    host = tmp_path / "notebook.html"
    host.write_text(
        "<!DOCTYPE html><html><head><meta charset='utf-8'></head><body style='margin:0'>"
        + text._repr_html_()
        + image._repr_html_()
        + text.fragment()
        + text.fragment()
        + "</body></html>",
        encoding="utf-8",
    )
    page.goto(host.as_uri())
    frames = page.iframe_contexts(2)
    assert len(frames) == 2
    for context in frames:
        assert page.wait_for(READY, context=context) == "1"
    assert page.wait_for(
        "[...document.querySelectorAll('.tvz')].every(r => r.dataset.ready === '1')"
        " && document.querySelectorAll('.tvz').length === 2"
    )

    # A real hover over patch (row 1, col 3) of the image frame changes that frame only.
    text_frame, image_frame = frames
    origin = page.evaluate(
        "(() => { const r = document.querySelectorAll('iframe')[1]"
        ".getBoundingClientRect(); return [r.left, r.top]; })()"
    )
    x, y = patch_center(page, 1, 3, index=1, context=image_frame)
    heat = canvas_digest(page, ".tvz-overlay", 1, context=image_frame)
    page.hover_until(
        origin[0] + x,
        origin[1] + y,
        "document.querySelector('.tvz').dataset.query === '9'",
        context=image_frame,
    )
    assert canvas_digest(page, ".tvz-overlay", 1, context=image_frame) != heat
    assert state(page, text_frame)["hover"] == ""

    # The two inline copies have their own ids, and hovering one leaves the other alone.
    ids = page.evaluate("[...document.querySelectorAll('.tvz')].map(r => r.id)")
    assert len(set(ids)) == 2
    page.move_mouse(*page.center_of(".tvz-left .tvz-token", 1))
    assert page.evaluate("[...document.querySelectorAll('.tvz')].map(r => r.dataset.hover)") == ["q1", ""]
    page.browser.pump(0.1)
    assert page.errors == []


def test_a_broken_payload_says_so_instead_of_staying_blank(page, text_maps, tmp_path):
    document = head_view(text_maps, TOKENS).html
    payload = embedded(document, "tvz-data")
    broken = tmp_path / "broken.html"
    broken.write_text(document.replace(payload, payload[: len(payload) // 2]), encoding="utf-8")
    page.goto(broken.as_uri())
    assert page.wait_for(READY) != "1"
    status = page.evaluate("document.querySelector('.tvz-status').textContent")
    assert "Could not show this attention view" in status
    page.browser.pump(0.1)
    assert any("transformer-visualizer view" in error for error in page.errors)


def test_chromium_version_is_reported(browser):
    version = browser.send("Browser.getVersion")["product"]
    assert version.split("/")[0] in ("Chrome", "HeadlessChrome", "Chromium")
    print(json.dumps({"browser": version}))
