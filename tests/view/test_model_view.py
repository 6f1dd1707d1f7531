"""The model view: layers x heads as thumbnails, block-averaged for long maps; a click opens the detail.

The block means are checked against a loop written here, the thumbnails of a captured
GPT-2 (maps rebuilt from the fused kernel's inputs) against eager ``output_attentions``, and
the page in headless Chromium: a click on a thumbnail opens the head view, image view or
heat map of that layer and head; ticking heads there changes what is drawn.
"""

import base64
import os
import pathlib

import numpy as np
import pytest
from analysis.declared_maps import captured_seq2seq
from view_data import canvas_digest, config_of, embedded, open_view, softmax_maps, state

from visualizer.view import model_view
from visualizer.view._codec import decode_maps, max_error
from visualizer.view._downsample import block_average, block_means

SUB = ".tvz-sub"


def loop_block_average(weights, size):
    """Block means the slow way: one output cell at a time."""
    queries, keys = weights.shape[-2:]
    bq, bk = -(-queries // size), -(-keys // size)
    out = np.zeros((*weights.shape[:-2], -(-queries // bq), -(-keys // bk)))
    for i in range(out.shape[-2]):
        for j in range(out.shape[-1]):
            out[..., i, j] = weights[..., i * bq : (i + 1) * bq, j * bk : (j + 1) * bk].mean(axis=(-2, -1))
    return out


@pytest.mark.parametrize(
    "shape, size", [((2, 10, 10), 4), ((3, 7, 13), 5), ((1, 6, 6), 64), ((2, 130, 65), 64)]
)
def test_block_average_matches_a_loop(shape, size):
    weights = softmax_maps(shape, seed=1)
    averaged, steps = block_average(weights, size)
    np.testing.assert_allclose(averaged, loop_block_average(weights, size), rtol=1e-5, atol=1e-7)
    assert max(averaged.shape[-2:]) <= size
    assert steps == (-(-shape[1] // size), -(-shape[2] // size))


def test_block_means_over_row_blocks_match_block_average():
    weights = softmax_maps((3, 101, 77), seed=2)
    blocks = [(start, weights[:, start : start + 13]) for start in range(0, 101, 13)]  # not aligned to cells
    for (means, steps), size in zip(block_means(blocks, 3, 101, 77, (8, 30, 200)), (8, 30, 200), strict=True):
        expected, expected_steps = block_average(weights, size)
        np.testing.assert_allclose(means, expected, rtol=1e-5, atol=1e-8)
        assert steps == expected_steps


def thumbnails(document):
    config = config_of(document)
    return decode_maps(embedded(document, "tvz-data"), config["maps"]), config


def test_thumbnails_of_a_captured_gpt2_match_eager_attentions():
    torch = pytest.importorskip("torch")
    from transformers import GPT2Config, GPT2LMHeadModel

    from visualizer import capture_attention

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=60, n_positions=200, n_embd=16, n_layer=2, n_head=2)
    model = GPT2LMHeadModel(config).eval()
    ids = torch.randint(0, 60, (1, 150))
    with capture_attention(model) as maps, torch.no_grad():
        model(ids)
    assert maps.info(0).rebuilt  # the sdpa kernel ran; the maps are rebuilt on demand
    model.set_attn_implementation("eager")
    with torch.no_grad():
        eager = model(ids, output_attentions=True).attentions
    view = model_view(maps, [f"t{i}" for i in range(150)], thumb=32)
    back, config = thumbnails(view.html)
    assert config["layers"] == ["transformer.h.0.attn", "transformer.h.1.attn"]
    assert [row["block"] for row in config["rows"]] == [[5, 5], [5, 5]]  # 150 tokens -> 30 cells
    assert [row["detail"] for row in config["rows"]] == ["head", "head"]
    for layer in range(2):
        expected = loop_block_average(eager[layer][0].numpy(), 32)
        assert back.shape[-2:] == (30, 30)
        assert (np.abs(back[layer] - expected) <= max_error(expected, config["maps"])).all()
        detail = decode_maps(embedded(view.html, f"tvz-layer-{layer}"), config["rows"][layer]["maps"])
        full = eager[layer][0].numpy()[None]
        assert (np.abs(detail - full) <= max_error(full, config["rows"][layer]["maps"])).all()


def test_a_long_lazy_capture_is_read_in_row_blocks_never_whole(monkeypatch):
    torch = pytest.importorskip("torch")
    from transformers import GPT2Config, GPT2LMHeadModel

    from visualizer import AttentionMaps, capture_attention

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=60, n_positions=640, n_embd=16, n_layer=2, n_head=2)).eval()
    ids = torch.randint(0, 60, (1, 600))
    with capture_attention(model) as maps, torch.no_grad():
        model(ids)
    model.set_attn_implementation("eager")
    with torch.no_grad():
        eager = [a[0].numpy() for a in model(ids, output_attentions=True).attentions]

    def refuse(self, key):
        raise AssertionError("a whole layer was built")

    monkeypatch.setattr(AttentionMaps, "__getitem__", refuse)
    view = model_view(maps, [f"t{i}" for i in range(600)], include_heads=[1])
    back, config = thumbnails(view.html)
    for layer in range(2):
        row = config["rows"][layer]
        assert row["detail"] == "heatmap" and row["block"] == [10, 10] and row["detail_block"] == [3, 3]
        expected = loop_block_average(eager[layer][[1]], 64)
        assert (np.abs(back[layer] - expected) <= max_error(expected, config["maps"]) + 1e-6).all()
        detail = decode_maps(embedded(view.html, row["data"]), row["maps"])
        expected = loop_block_average(eager[layer][[1]], 256)[None]
        assert (np.abs(detail - expected) <= max_error(expected, row["maps"]) + 1e-6).all()


def test_long_maps_get_a_block_averaged_detail_and_say_so():
    maps = [softmax_maps((1, 2, 600, 600), seed=layer, sharpness=1) for layer in range(2)]
    view = model_view(maps, [f"w{i}" for i in range(600)], include_heads=[1])
    _, config = thumbnails(view.html)
    row = config["rows"][0]
    assert row["detail"] == "heatmap" and row["detail_block"] == [3, 3] and row["block"] == [10, 10]
    detail = decode_maps(embedded(view.html, "tvz-layer-1"), row["maps"])
    expected = loop_block_average(maps[1][0, [1]], 256)[None]
    assert (np.abs(detail - expected) <= max_error(expected, row["maps"])).all()
    assert view.nbytes < 1_000_000  # 2 x 600 x 600 float32 would be 2.9 MB; never sent whole


def test_model_view_arguments_and_errors():
    maps = [softmax_maps((2, 3, 5, 5), seed=layer) for layer in range(3)]
    tokens = list("abcde")
    config = config_of(model_view(maps, tokens, layers=[2, 0], include_heads=[2], batch=1).html)
    assert config["layers"] == ["layer 2", "layer 0"] and config["heads"] == ["2"]
    back, _ = thumbnails(model_view(maps, tokens, layers=[2], batch=1).html)
    assert (np.abs(back[0] - maps[2][1]) <= max_error(maps[2][1], config["maps"])).all()
    with pytest.raises(ValueError, match=r"tokens has 4 entries but attentions\[0\] has 5 queries"):
        model_view(maps, tokens[:4])
    with pytest.raises(TypeError, match="tokens must be a list of strings"):
        model_view(maps, "abcde")
    with pytest.raises(ValueError, match="model_view\\(\\): thumb must be an int >= 1"):
        model_view(maps, thumb=0)
    with pytest.raises(TypeError, match="thumb must be an int"):
        model_view(maps, thumb=2.5)
    with pytest.raises(IndexError, match="layers: layer 3 is out of range"):
        model_view(maps, layers=[3])
    with pytest.raises(IndexError, match="heads: head 5 is out of range"):
        model_view(maps, include_heads=[5])
    with pytest.raises(IndexError, match="batch item 2 is out of range"):
        model_view(maps, batch=2)
    with pytest.raises(ValueError, match="not both"):
        model_view(maps, tokens, image=np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="negative values"):
        model_view([-maps[0]])
    with pytest.raises(ValueError, match="declare no cross-attention"):
        model_view(maps, tokens, decoder_tokens=tokens)
    with pytest.raises(ValueError, match=r"shape \(5,\): a tuple or list holds layers"):
        model_view(maps[0][0][0][0])


def test_encoder_decoder_and_image_errors():
    _, bart, _, _ = captured_seq2seq("bart", src=5, tgt=4)
    encoder = [f"s{i}" for i in range(5)]
    with pytest.raises(ValueError, match="pass decoder_tokens= besides tokens="):
        model_view(bart, encoder)
    with pytest.raises(ValueError, match=r"decoder_tokens has 3 entries but attentions\[2\] has 4 queries"):
        model_view(bart, encoder, decoder_tokens=list("abc"))
    with pytest.raises(ValueError, match="image= needs self-attention maps of a vision model"):
        model_view(bart, image=np.zeros((8, 8, 3), np.uint8))
    config = config_of(model_view(bart).html)  # no tokens: heat maps, rows still grouped
    assert config["sections"] == ["Encoder self", "Decoder self", "Cross"]
    assert [row["detail"] for row in config["rows"]] == ["heatmap"] * 6
    assert [row["layer"] for row in config["rows"]] == [0, 1, 2, 4, 3, 5]  # grouped, model order within
    assert [row["shape"] for row in config["rows"]][3:5] == [[4, 4], [4, 5]]
    maps = [softmax_maps((1, 2, 13, 13), seed=layer) for layer in range(2)]
    with pytest.raises(ValueError, match="cannot infer the patch grid"):
        model_view(maps, image=np.zeros((30, 40, 3), np.uint8), prefix_tokens=2)
    config = config_of(model_view(maps, image=np.zeros((30, 40, 3), np.uint8), grid=(3, 4)).html)
    assert config["image"]["grid"] == [3, 4] and config["image"]["prefix"] == ["CLS"]


def shoot(page, name):
    folder = os.environ.get("VISUALIZER_SHOTS")
    if folder:
        page.screenshot(pathlib.Path(folder, name))


def test_a_click_opens_the_head_view_of_that_cell(page, tmp_path):
    maps = [softmax_maps((1, 4, 8, 8), seed=70 + layer) for layer in range(3)]
    tokens = ["[CLS]", "play", "##ing", "the", "game", "is", "fun", "[SEP]"]
    view = model_view(maps, tokens, title="model view test")
    open_view(page, view.save(tmp_path / "model.html"))
    assert page.evaluate("document.querySelectorAll('.tvz-thumb').length") == 12
    assert state(page)["selected"] == "" and page.evaluate(f"document.querySelector('{SUB}')") is None
    assert state(page)["downsampled"] == "false"
    # Cell (layer 2, head 1) is the 10th button: a click opens its head view, that head ticked.
    page.click(*page.center_of(".tvz-thumb", 2 * 4 + 1))
    page.wait_for(f"document.querySelector('{SUB}') && document.querySelector('{SUB}').dataset.head")
    assert state(page)["selected"] == "2,1" and state(page)["detail"] == "head"
    assert state(page, selector=SUB)["head"] == "1"
    shown = page.evaluate(
        f"[...document.querySelectorAll('{SUB} .tvz-left .tvz-text')].map(t => t.textContent)"
    )
    assert shown == ["[CLS]", "play", "ing", "the", "game", "is", "fun", "[SEP]"]
    row = config_of(view.html)["rows"][2]
    shown_maps = decode_maps(embedded(view.html, row["data"]), row["maps"])[0]  # what the page has
    assert int(state(page, selector=SUB)["lines"]) == int((shown_maps[1] >= 0.005).sum())
    digest = canvas_digest(page, f"{SUB} .tvz-lines")
    # Ticking head 3 in the detail draws its lines too.
    page.click(*page.center_of(f"{SUB} .tvz-head[data-head='3']"))
    assert state(page, selector=SUB)["head"] == "1,3"
    assert int(state(page, selector=SUB)["lines"]) == int((shown_maps[[1, 3]] >= 0.005).sum())
    assert canvas_digest(page, f"{SUB} .tvz-lines") != digest
    shoot(page, "model_view.png")
    # Another cell replaces the detail.
    page.click(*page.center_of(".tvz-thumb", 0))
    page.wait_for("document.querySelector('.tvz').dataset.selected === '0,0'")
    assert page.evaluate(f"document.querySelectorAll('{SUB}').length") == 1
    assert state(page, selector=SUB)["head"] == "0"
    # Save PNG takes the grid and the detail.
    page.click(*page.center_of(".tvz-save"))
    url = page.wait_for("document.querySelector('.tvz').tvzPng")
    assert len(base64.b64decode(url.split(",", 1)[1])) > 10000
    page.browser.pump(0.1)
    assert page.errors == []


def test_long_text_detail_is_a_heat_map_with_tokens_on_hover(page, tmp_path):
    maps = [softmax_maps((1, 2, 600, 600), seed=layer, sharpness=1) for layer in range(2)]
    view = model_view(maps, [f"w{i}" for i in range(600)], thumb=32)
    open_view(page, view.save(tmp_path / "long.html"))
    assert state(page)["downsampled"] == "true"
    note = page.evaluate("document.querySelector('.tvz-grid-note').textContent")
    assert "600 x 600 tokens averaged over blocks of 19 x 19 to 32 x 32 cells" in note
    page.click(*page.center_of(".tvz-thumb", 3))
    page.wait_for("document.querySelector('.tvz').dataset.detail === 'heatmap'")
    assert "averaged over blocks of 3 x 3 tokens" in page.evaluate(
        "document.querySelector('.tvz-detail-note').textContent"
    )
    box = page.evaluate(
        "(() => { const r = document.querySelector('.tvz-heatmap').getBoundingClientRect();"
        "return [r.left, r.top, r.width, r.height]; })()"
    )
    page.move_mouse(
        box[0] + box[2] * 100.5 / 200, box[1] + box[3] * 50.5 / 200
    )  # the middle of cell (50, 100)
    readout = page.evaluate("document.querySelector('.tvz-readout').textContent")
    assert readout.startswith('queries: tokens 150–152 ("w150" … "w152") → keys: tokens 300–302')
    page.browser.pump(0.1)
    assert page.errors == []


def test_image_detail_and_encoder_decoder_sections(page, tmp_path):
    maps = [softmax_maps((1, 2, 13, 13), seed=80 + layer) for layer in range(2)]
    picture = np.full((30, 40, 3), 120, np.uint8)
    open_view(page, model_view(maps, image=picture, grid=(3, 4)).save(tmp_path / "image.html"))
    page.click(*page.center_of(".tvz-thumb", 3))
    page.wait_for("document.querySelector('.tvz').dataset.detail === 'image'")
    assert (state(page, selector=SUB)["layer"], state(page, selector=SUB)["head"]) == ("0", "1")
    assert page.evaluate(f"document.querySelector('{SUB} .tvz-img').naturalWidth") == 40

    _, bart, _, _ = captured_seq2seq("bart", src=5, tgt=4)
    view = model_view(bart, [f"s{i}" for i in range(5)], decoder_tokens=["a", "b", "c", "d"])
    open_view(page, view.save(tmp_path / "bart.html"))
    titles = page.evaluate("[...document.querySelectorAll('.tvz-section-title')].map(t => t.textContent)")
    assert titles == ["Encoder self", "Decoder self", "Cross"]
    labels = page.evaluate("[...document.querySelectorAll('.tvz-row-label')].map(t => t.textContent)")[1:]
    assert labels[4] == "model.decoder.layers.0.encoder_attn"
    page.click(*page.center_of(".tvz-thumb", 4 * 2))  # the first cross-attention row, head 0
    page.wait_for("document.querySelector('.tvz').dataset.detail === 'head'")
    columns = page.evaluate(
        f"['.tvz-left', '.tvz-right'].map(s => [...document.querySelectorAll('{SUB} ' + s + ' .tvz-text')]"
        ".map(t => t.textContent))"
    )
    assert columns == [["a", "b", "c", "d"], [f"s{i}" for i in range(5)]]  # decoder queries, encoder keys
    shoot(page, "model_view_bart.png")
    page.browser.pump(0.1)
    assert page.errors == []
