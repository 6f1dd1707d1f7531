"""text_view(relevance=...) and image_view(relevance=...): the scores in the page, their errors, and
the shading in Chromium.

The scores are read back from the saved page (``decode_scores`` on the ``tvz-relevance`` block)
and compared with what ``explain()`` returned for tiny models built from configs; in the browser,
the pixels of the most and least relevant token or patch must differ, in the colours the scale
says. The browser tests skip without Chromium unless VISUALIZER_REQUIRE_BROWSER=1.
"""

import io
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from tiny_models import tiny_llama
from view_data import config_of, embedded, open_view, softmax_maps, state

from visualizer import Tokens, capture_attention, explain
from visualizer.relevance import Relevance
from visualizer.view import image_view, text_view
from visualizer.view._relevance import decode_scores

PAGE_SIZE = (1100, 800)
WORDS = ["▁The", "▁quick", "▁brown", "▁fox", "▁jumps", "▁over", "▁the", "▁lazy", "▁dog", "▁runs"]
ROOT = "document.querySelector('.tvz')"


@pytest.fixture(scope="module")
def llama():
    """A tiny Llama, its maps on 10 token ids, and input x gradient relevance (signed) of logit 7."""
    model = tiny_llama(initializer_range=0.2)
    model.set_attn_implementation("sdpa")
    ids = torch.randint(3, 100, (1, len(WORDS)), generator=torch.Generator().manual_seed(3))
    with torch.no_grad(), capture_attention(model) as maps:
        model(input_ids=ids)
    return maps, explain(model, ids, target=7, method="input_x_gradient")


@pytest.fixture(scope="module")
def vit():
    """A tiny timm ViT (CLS + 4x4 patches), its maps on random pixels, and attention_grad of class 3."""
    import timm

    torch.manual_seed(0)
    model = timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, img_size=64, depth=2, num_classes=5
    ).eval()
    pixels = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad(), capture_attention(model) as maps:
        model(pixels)
    return maps, explain(model, pixels, target=3), explain(model, pixels, target=3, method="input_x_gradient")


GREY = np.full((64, 64, 3), 128, dtype=np.uint8)


def scores_of(view):
    meta = config_of(view.html)["relevance"]
    return decode_scores(embedded(view.html, "tvz-relevance"), meta), meta


# -- in Python --------------------------------------------------------------------------------


def test_text_view_embeds_the_explained_scores_and_names_them(llama):
    maps, relevance = llama
    view = text_view(maps, WORDS, relevance=relevance)
    scores, meta = scores_of(view)
    expected = relevance.scores[0].numpy()
    np.testing.assert_array_equal(scores, expected)  # float32 in the page: exact
    assert meta["method"] == "input_x_gradient" and meta["target"] == "7" and meta["position"] == 9
    assert meta["signed"] == bool((expected < 0).any())
    # The colour scale spans the tokens other than the explained one.
    assert meta["limit"] == pytest.approx(np.abs(expected[:9]).max())
    label = meta["label"]
    assert "input_x_gradient" in label and "target 7" in label and "position 9 \u201cruns\u201d" in label
    assert f"{relevance.outputs[0].item():.4g}" in label
    assert "relevance (input_x_gradient)" in repr(view)


def test_image_view_embeds_the_explained_scores_and_scales_by_the_patches(vit):
    maps, relevance, _ = vit
    view = image_view(maps, GREY, relevance=relevance)
    scores, meta = scores_of(view)
    expected = relevance.scores[0].numpy()
    np.testing.assert_array_equal(scores, expected)
    assert meta["limit"] == pytest.approx(np.abs(expected[1:]).max())  # the patches; CLS is explained
    assert abs(expected[0]) > meta["limit"]  # CLS's own score would have washed the patches out
    assert "attention_grad of target 3 at position 0 \u201cCLS\u201d (the class token)" in meta["label"]
    assert config_of(view.html)["grid"] == [4, 4]


def test_plain_scores_one_item_or_a_batch(llama):
    maps, _ = llama
    single = np.linspace(-1, 2, len(WORDS)).astype(np.float32)
    scores, meta = scores_of(text_view(maps, WORDS, relevance=single))
    np.testing.assert_array_equal(scores, single)
    assert meta["signed"] and meta["method"] is None and meta["position"] is None
    assert meta["limit"] == 2 and "no method, target or position" in meta["label"]
    batch = torch.stack([torch.zeros(len(WORDS)), torch.arange(len(WORDS), dtype=torch.float32)])
    doubled = [softmax_maps((2, 4, 10, 10), seed=s) for s in range(2)]
    scores, meta = scores_of(text_view(doubled, WORDS, relevance=batch, batch=1))
    np.testing.assert_array_equal(scores, np.arange(len(WORDS)))
    assert not meta["signed"] and meta["limit"] == 9
    scores, _ = scores_of(text_view(doubled, WORDS, relevance=batch.tolist(), batch=-2))
    assert not scores.any()


def test_a_generations_last_token_may_have_no_score():
    maps = [softmax_maps((1, 2, 9, 9))]
    scores, meta = scores_of(text_view(maps, WORDS, prompt_length=6, relevance=np.ones(9)))
    assert meta["count"] == 9 and len(scores) == 9


def test_a_relevance_gives_plain_maps_its_patch_grid():
    maps = [softmax_maps((1, 2, 17, 17))]
    layout = Tokens(prefix=1, grid=(2, 8))
    relevance = _relevance(torch.rand(1, 17), layout)
    wide = np.zeros((20, 80, 3), dtype=np.uint8)
    config = config_of(image_view(maps, wide, relevance=relevance).html)
    assert config["grid"] == [2, 8]
    # plain maps of a square count would default to 4x4: the relevance's grid wins
    assert config_of(image_view(maps, GREY, relevance=relevance).html)["grid"] == [2, 8]


def _relevance(scores, layout, position=0):
    return Relevance(scores, "rollout", 1, position, "given", torch.zeros(len(scores)), ("a",), layout)


@pytest.mark.parametrize(
    ("relevance", "error", "message"),
    [
        ("scores", TypeError, "relevance must be what visualizer.explain() returns"),
        ({"scores": [1.0]}, TypeError, "got dict"),
        (3.0, TypeError, "got float"),
        (np.array(["a"] * 10), TypeError, "must hold real numbers"),
        (np.zeros((1, 1, 10)), ValueError, "(tokens,) or (batch, tokens); got shape (1, 1, 10)"),
        (np.zeros(7), ValueError, "relevance has 7 scores but the view has 10 tokens"),
        (np.r_[np.zeros(9), np.nan], ValueError, "1 scores that are NaN or infinite (the first at token 9"),
        (np.r_[np.inf, np.zeros(9)], ValueError, "the first at token 0: inf"),
        (np.zeros((2, 10)), IndexError, "batch (of the relevance scores): item 3 is out of range"),
    ],
)
def test_text_view_refuses_bad_relevance(llama, relevance, error, message):
    maps = [softmax_maps((4, 2, 10, 10))]
    with pytest.raises(error) as raised:
        text_view(maps, WORDS, relevance=relevance, batch=3)
    assert message in str(raised.value)


def test_image_view_refuses_relevance_of_another_geometry(vit):
    maps, relevance, _ = vit
    with pytest.raises(ValueError, match=r"relevance has 13 scores but the view has 17 tokens \(1 \+ 4x4"):
        image_view(maps, GREY, relevance=np.zeros(13))
    other = _relevance(torch.rand(1, 17), Tokens(prefix=1, grid=(2, 8)))
    with pytest.raises(
        ValueError, match="1 prefix tokens and a 2 x 8 patch grid, but the view shows 1 prefix"
    ):
        image_view(maps, GREY, relevance=other)
    registers = _relevance(torch.rand(1, 17), Tokens(prefix=5, grid=(3, 4)))
    with pytest.raises(ValueError, match="over 5 prefix tokens and a 3 x 4 patch grid"):
        image_view(maps, GREY, relevance=registers)
    text = _relevance(torch.rand(1, 17), Tokens(prefix=0, grid=None))
    with pytest.raises(ValueError, match="declares no patch grid .* pass relevance.scores"):
        image_view(maps, GREY, relevance=text)
    # the way out the message names: the bare scores, whose length fits
    assert scores_of(image_view(maps, GREY, relevance=text.scores))[1]["count"] == 17
    nan = _relevance(torch.full((1, 17), float("nan")), relevance.layout)
    with pytest.raises(ValueError, match="17 scores that are NaN"):
        image_view(maps, GREY, relevance=nan)


def test_pages_with_relevance_stay_self_contained_and_small(llama, vit):
    (text_maps, text_relevance), (image_maps, image_relevance, _) = llama, vit
    text = text_view(text_maps, WORDS, relevance=text_relevance)
    for view in (text, image_view(image_maps, GREY, relevance=image_relevance)):
        lowered = view.html.lower()
        assert "http://" not in lowered and "https://" not in lowered and "url(" not in lowered
        assert "fetch(" not in lowered and "<link" not in lowered and "@import" not in lowered
        assert not re.search(r"<script[^>]*\ssrc\s*=", lowered)
        scripts = re.findall(r"<script([^>]*)>", view.html)
        assert len(scripts) == len([s for s in scripts if "type=" in s]) + 1  # one script, data blocks
    # What relevance adds besides its scores (4 bytes a token, base64): the colour table and the label.
    added = len(text.html) - len(text_view(text_maps, WORDS).html) - len(embedded(text.html, "tvz-relevance"))
    assert 0 < added < 3000
    assert len(embedded(text.html, "tvz-relevance")) == 4 * ((4 * len(WORDS) + 2) // 3)


def test_views_stay_free_of_torch_with_plain_scores():
    code = (
        "import sys, numpy as np\n"
        "from visualizer.view import text_view\n"
        "maps = [np.full((1, 1, 3, 3), 1 / 3, dtype=np.float32)]\n"
        "view = text_view(maps, ['a', 'b', 'c'], relevance=np.array([0.5, -1.0, 2.0]))\n"
        "assert 'float32-le' in view.html\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# -- in Chromium ----------------------------------------------------------------------------------


def pixel(png: bytes, x: float, y: float) -> np.ndarray:
    """The RGB of the screenshot ``png`` at CSS pixel (x, y) (the page has a device scale of 1)."""
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))[int(y), int(x)].astype(int)


def left_edge(page, i):
    """A point inside token ``i``'s box, by its left edge (clear of its glyphs)."""
    x, y = page.center_of(".tvz-tok", i)
    width = page.evaluate(f"document.querySelectorAll('.tvz-tok')[{i}].getBoundingClientRect().width")
    return x - width / 2 + 2, y - 5


def test_text_view_shades_tokens_by_relevance_and_switches_to_attention(page, llama, tmp_path):
    maps, relevance = llama
    scores = relevance.scores[0].numpy()
    view = text_view(maps, WORDS, relevance=relevance)
    open_view(page, view.save(tmp_path / "text.html"))
    assert state(page)["shade"] == "relevance"
    np.testing.assert_array_equal(np.array(page.evaluate(f"Array.from({ROOT}.tvzShown)"), np.float32), scores)
    label = page.evaluate("document.querySelector('.tvz-rel-label').textContent")
    assert "input_x_gradient" in label and "target 7" in label and "position 9" in label
    assert page.evaluate("document.querySelector('.tvz-tok.tvz-explained').tvzIndex") == 9

    # Pixels: the strongest score (the explained token left out) is at the end of the scale, red if
    # positive and blue if negative; the one nearest 0 shows the panel behind it.
    others = scores[:9]
    top, least = int(np.abs(others).argmax()), int(np.abs(others).argmin())
    shot = page.screenshot()
    strong, faint = pixel(shot, *left_edge(page, top)), pixel(shot, *left_edge(page, least))
    assert np.sign(strong[0] - strong[2]) == np.sign(others[top]) and abs(strong[0] - strong[2]) > 60
    assert np.abs(strong - faint).max() > 60 and np.abs(faint - 247).max() < 20

    # Hover: the readout gives that token's score; "attention" switches the shading.
    page.hover_until(*page.center_of(".tvz-tok", top), f"{ROOT}.dataset.focus === '{top}'")
    assert "relevance" in page.evaluate("document.querySelector('.tvz-readout').textContent")
    page.click(*page.center_of(".tvz-shade .tvz-head[data-value='attention']"))
    assert state(page)["shade"] == "attention"
    assert page.evaluate("document.querySelector('.tvz-rel-head').hidden")
    assert page.screenshot() != shot
    page.click(*page.center_of(".tvz-shade .tvz-head[data-value='relevance']"))
    assert state(page)["shade"] == "relevance"
    assert np.array_equal(pixel(page.screenshot(), *left_edge(page, top)), strong)
    page.browser.pump(0.1)
    assert page.errors == []


def test_text_view_diverging_and_sequential_scales_in_pixels(page, tmp_path):
    maps = [softmax_maps((1, 2, 10, 10))]
    signed = np.array([-2, -1, 0, 0.5, 1, 2, 0, 0, 0, 0], dtype=np.float32)
    open_view(page, text_view(maps, WORDS, relevance=signed).save(tmp_path / "signed.html"))
    shot = page.screenshot()
    blue, zero, red = (pixel(shot, *left_edge(page, i)) for i in (0, 2, 5))
    assert blue[2] - blue[0] > 60 and red[0] - red[2] > 60 and np.abs(zero - 247).max() < 8
    half = pixel(shot, *left_edge(page, 4))  # half the scale: between white and the end
    assert red[1] < half[1] < zero[1]
    ticks = page.evaluate("[...document.querySelectorAll('.tvz-tick')].map(t => t.textContent)")
    assert ticks == ["\u22122.00", "0", "2.00"]
    open_view(page, text_view(maps, WORDS, relevance=np.abs(signed)).save(tmp_path / "sequential.html"))
    shot = page.screenshot()
    assert np.array_equal(pixel(shot, *left_edge(page, 0)), red)  # |-2| is the top of 0..2: red
    ticks = page.evaluate("[...document.querySelectorAll('.tvz-tick')].map(t => t.textContent)")
    assert ticks == ["0", "1.00", "2.00"]
    assert "Sequential" in page.evaluate("document.querySelector('.tvz-rel-scale').textContent")
    page.browser.pump(0.1)
    assert page.errors == []


def test_image_view_shows_a_relevance_panel(page, vit, tmp_path):
    maps, _, relevance = vit  # input x gradient: signed scores, so the diverging scale
    scores = relevance.scores[0].numpy()
    view = image_view(maps, GREY, relevance=relevance)
    open_view(page, view.save(tmp_path / "image.html"))
    np.testing.assert_array_equal(
        np.array(page.evaluate(f"Array.from({ROOT}.tvzRelevance)"), np.float32), scores
    )
    assert page.evaluate("document.querySelectorAll('.tvz-panel').length") == 3
    assert "input_x_gradient" in page.evaluate("document.querySelector('.tvz-rel-label').textContent")
    patches = scores[1:]
    top, least = int(np.abs(patches).argmax()), int(np.abs(patches).argmin())
    box = page.evaluate(
        "(() => { const r = document.querySelector('.tvz-rel-panel canvas').getBoundingClientRect();"
        " return [r.left, r.top, r.width, r.height]; })()"
    )

    def centre(patch):  # a 4x4 grid; off the middle, clear of the hover outline
        return box[0] + (patch % 4 + 0.3) * box[2] / 4, box[1] + (patch // 4 + 0.3) * box[3] / 4

    # The strongest patch: red if positive, blue if negative; the one nearest 0: the grey picture, veiled.
    shot = page.screenshot()
    strong, faint = pixel(shot, *centre(top)), pixel(shot, *centre(least))
    assert np.sign(strong[0] - strong[2]) == np.sign(patches[top]) and abs(strong[0] - strong[2]) > 60
    assert np.abs(strong - faint).max() > 60 and np.abs(faint - 150).max() < 25

    # Hovering a patch of the relevance panel selects it as the query and names its score.
    page.hover_until(*centre(top), f"{ROOT}.dataset.query === '{top + 1}'")
    caption = page.evaluate("document.querySelector('.tvz-rel-panel figcaption').textContent")
    assert f"row {top // 4}, col {top % 4}" in caption
    page.browser.pump(0.1)
    assert page.errors == []
