"""The controls every view shares and the head view's head subsets, in headless Chromium.

Theme toggle (auto / light / dark, following prefers-color-scheme), "Save PNG" (a PNG of the
view as it is, kept on the root for tools and tests), ticking heads, double-click to solo, the
mean of the ticked heads, prettified tokens with the raw piece on hover. Screenshots go to
``$VISUALIZER_SHOTS`` when it is set.
"""

import base64
import os
import pathlib

import numpy as np
import pytest
from view_data import canvas_digest, config_of, embedded, open_view, softmax_maps, state

from visualizer.view import head_view, image_view
from visualizer.view._codec import decode_maps

BACKGROUND = "getComputedStyle(document.querySelector('.tvz')).backgroundColor"


def shoot(page, name):
    folder = os.environ.get("VISUALIZER_SHOTS")
    if folder:
        page.screenshot(pathlib.Path(folder, name))


def save_png(page, context=None):
    """Click "Save PNG"; the PNG's bytes, decoded from the data URL the view kept."""
    page.click(*page.center_of(".tvz-save"))
    url = page.wait_for("document.querySelector('.tvz').tvzPng", context=context)
    assert url.startswith("data:image/png;base64,")
    png = base64.b64decode(url.split(",", 1)[1])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    return png


def emulate_dark(page, dark):
    page.send(
        "Emulation.setEmulatedMedia",
        {"features": [{"name": "prefers-color-scheme", "value": "dark" if dark else "light"}]},
    )


@pytest.fixture(scope="module")
def text_maps():
    return [softmax_maps((1, 4, 7, 7), seed=50 + layer) for layer in range(2)]


def test_head_argument_forms_and_errors(text_maps):
    def initial(**kwargs):
        return config_of(head_view(text_maps, GPT2, **kwargs).html)["initial"]

    assert initial(head=2) == {"layer": 1, "heads": [2], "mean": False}
    assert initial(head=np.int64(-1))["heads"] == [3]
    assert initial(head=(3, 0))["heads"] == [0, 3]  # ticked in head order
    assert initial(head=np.array([1, 2]))["heads"] == [1, 2]
    assert initial(head="all") == {"layer": 1, "heads": [0, 1, 2, 3], "mean": False}
    assert initial(include_heads=[1, 3], head=[3])["heads"] == [1]  # positions among the kept heads
    assert initial(heads=[1, 3]) == initial(head=[1, 3])  # bertviz's name: the heads ticked
    with pytest.raises(
        ValueError, match="head= and heads= .bertviz's name. are the same argument and disagree"
    ):
        initial(heads=[1], head=2)
    with pytest.raises(ValueError, match="head is an empty list"):
        initial(head=[])
    with pytest.raises(ValueError, match="names a head more than once"):
        initial(head=[1, -3])
    with pytest.raises(IndexError, match="head 4 is out of range"):
        initial(head=[0, 4])
    with pytest.raises(ValueError, match=r"head 2 is not among the kept heads \[1, 3\]"):
        initial(include_heads=[1, 3], head=[2])
    with pytest.raises(TypeError, match="a list of heads holds head indices"):
        initial(head=["0"])
    with pytest.raises(TypeError, match="a head index must be an int"):
        initial(head=[0.0])
    with pytest.raises(ValueError, match="one of \\('mean', 'all'\\)"):
        initial(head="first")
    with pytest.raises(ValueError, match="scheme must be one of"):
        head_view(text_maps, GPT2, scheme="bpe")
    # scheme="raw" shows the pieces as they are.
    assert config_of(head_view(text_maps, GPT2, scheme="raw").html)["tokens"] == GPT2


GPT2 = ["The", "Ġcat", "Ġsat", "Ġon", "Ġthe", "Ġmat", "Ċ"]


def test_heads_tick_solo_and_mean(page, text_maps, tmp_path):
    view = head_view(text_maps, GPT2, layer=1, head=[0, 2], title="subsets")
    open_view(page, view.save(tmp_path / "head.html"))
    assert state(page)["head"] == "0,2" and state(page)["layer"] == "1"
    assert page.evaluate("[...document.querySelectorAll('.tvz-head.tvz-on')].map(b => b.dataset.head)") == [
        "0",
        "2",
    ]
    decoded = decode_maps(embedded(view.html, "tvz-data"), config_of(view.html)["maps"])
    # Lines drawn: one per weight >= 0.005 of each ticked head (no hover: every query).
    expected = int((decoded[1, [0, 2]] >= 0.005).sum())
    assert int(state(page)["lines"]) == expected
    two = canvas_digest(page, ".tvz-lines")

    page.click(*page.center_of(".tvz-head[data-head='3']"))  # tick head 3
    assert state(page)["head"] == "0,2,3"
    assert int(state(page)["lines"]) == int((decoded[1, [0, 2, 3]] >= 0.005).sum())
    assert canvas_digest(page, ".tvz-lines") != two
    page.click(*page.center_of(".tvz-head[data-head='0']"))  # untick head 0
    assert state(page)["head"] == "2,3"

    page.double_click(*page.center_of(".tvz-head[data-head='1']"))  # solo head 1
    assert state(page)["head"] == "1"
    assert int(state(page)["lines"]) == int((decoded[1, 1] >= 0.005).sum())
    assert page.evaluate("document.querySelectorAll('.tvz-head.tvz-on').length") == 1

    page.click(*page.center_of(".tvz-head[data-head='all']"))
    assert state(page)["head"] == "all"
    page.click(*page.center_of(".tvz-head[data-head='mean']"))
    assert state(page)["head"] == "mean"
    assert int(state(page)["lines"]) == int((decoded[1].mean(0) >= 0.005).sum())
    # Hover "cat" under the mean: the keys show the mean over the ticked (all) heads.
    page.move_mouse(*page.center_of(".tvz-left .tvz-token", 1))
    shown = page.evaluate("[...document.querySelectorAll('.tvz-right .tvz-weight')].map(w => w.textContent)")
    np.testing.assert_allclose([float(w) for w in shown], decoded[1, :, 1].mean(0), atol=6e-3)

    # Prettified tokens, the raw piece on hover (title), the newline as a visible mark.
    texts = page.evaluate("[...document.querySelectorAll('.tvz-left .tvz-text')].map(t => t.textContent)")
    assert texts == ["The", "cat", "sat", "on", "the", "mat", "\u21b5"]
    titles = page.evaluate("[...document.querySelectorAll('.tvz-left .tvz-token')].map(t => t.title)")
    assert titles[0] == "The" and '"Ġcat"' in titles[1] and '"Ċ"' in titles[6]
    page.browser.pump(0.1)
    assert page.errors == []


def test_theme_toggle_and_system_dark_mode(page, text_maps, tmp_path):
    emulate_dark(page, False)
    open_view(page, head_view(text_maps, GPT2, head="all").save(tmp_path / "head.html"))
    assert page.evaluate(BACKGROUND) == "rgb(255, 255, 255)"
    shoot(page, "head_view_light.png")
    page.click(*page.center_of(".tvz-theme"))  # auto -> light
    assert state(page)["themeMode"] == "light"
    page.click(*page.center_of(".tvz-theme"))  # light -> dark
    assert state(page)["themeMode"] == "dark" and state(page)["theme"] == "dark"
    dark = page.evaluate(BACKGROUND)
    assert dark != "rgb(255, 255, 255)"
    assert sum(int(c) for c in dark[4:-1].split(",")) < 120
    page.move_mouse(*page.center_of(".tvz-left .tvz-token", 2))
    shoot(page, "head_view_dark.png")
    page.click(*page.center_of(".tvz-theme"))  # dark -> auto: the system's light again
    assert page.evaluate(BACKGROUND) == "rgb(255, 255, 255)"
    # auto follows prefers-color-scheme; "light" holds against a dark system.
    emulate_dark(page, True)
    assert page.evaluate(BACKGROUND) == dark
    page.click(*page.center_of(".tvz-theme"))
    assert state(page)["themeMode"] == "light" and page.evaluate(BACKGROUND) == "rgb(255, 255, 255)"
    emulate_dark(page, False)
    page.browser.pump(0.1)
    assert page.errors == []


def test_save_png_of_the_head_and_image_views(page, text_maps, tmp_path):
    open_view(page, head_view(text_maps, GPT2, head="all").save(tmp_path / "head.html"))
    png = save_png(page)
    assert state(page)["pngShown"] == "download"  # a top-level page downloads it
    assert len(png) > 5000
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    box = page.evaluate(
        "[document.querySelector('.tvz').scrollWidth, document.querySelector('.tvz').scrollHeight]"
    )
    assert (width, height) == tuple(box)
    # The picture holds what is drawn: different heads, different PNG.
    page.double_click(*page.center_of(".tvz-head[data-head='3']"))
    assert save_png(page) != png

    maps = [softmax_maps((1, 2, 13, 13), seed=60)]
    picture = np.full((30, 40, 3), 100, np.uint8)
    open_view(page, image_view(maps, picture, grid=(3, 4)).save(tmp_path / "image.html"))
    assert len(save_png(page)) > 5000
    page.browser.pump(0.1)
    assert page.errors == []


def test_save_png_in_a_sandboxed_notebook_frame_shows_the_picture(page, text_maps, tmp_path):
    host = tmp_path / "notebook.html"
    host.write_text(
        "<!DOCTYPE html><html><head><meta charset='utf-8'></head><body style='margin:0'>"
        + head_view(text_maps, GPT2)._repr_html_()
        + "</body></html>",
        encoding="utf-8",
    )
    page.goto(host.as_uri())
    (frame,) = page.iframe_contexts(1)
    assert page.wait_for("document.querySelector('.tvz').dataset.ready", context=frame) == "1"
    page.evaluate("document.querySelector('.tvz-save').click()", context=frame)
    url = page.wait_for("document.querySelector('.tvz').tvzPng", context=frame)
    assert len(base64.b64decode(url.split(",", 1)[1])) > 3000
    assert state(page, frame)["pngShown"] == "inline"
    assert page.evaluate("document.querySelector('.tvz-shot img').src.length", context=frame) == len(url)
    page.browser.pump(0.1)
    assert page.errors == []
