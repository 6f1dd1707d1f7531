"""Encoder self, decoder self and cross attention in the head view of an encoder-decoder capture.

Cross-checked against the model's own eager weights: transformers' ``output_attentions``
(BART) and ``nn.MultiheadAttention(need_weights=True, average_attn_weights=False)`` called
again on the inputs each attention module received (``nn.Transformer``).
"""

import numpy as np
import pytest
from analysis.declared_maps import captured_seq2seq
from view_data import config_of, embedded, open_view, softmax_maps, state

from visualizer.view import head_view
from visualizer.view._codec import decode_maps, max_error
from visualizer.view._sections import sections

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def bart():
    return captured_seq2seq("bart", src=5, tgt=4)


ENCODER = ["<s>", "Ġthe", "Ġcat", "Ġsat", "</s>"]
DECODER = ["</s>", "Ġle", "Ġchat", "Ġassis"]


def section_maps(document, number):
    config = config_of(document)
    section = config["sections"][number]
    block = "tvz-data" if number == 0 else section["data"]
    return decode_maps(embedded(document, block), section["maps"]), section


def close(back, expected, meta):
    return (np.abs(back - expected) <= max_error(expected, meta)).all()


@pytest.mark.parametrize("kind", ["bart", "t5"])
def test_sections_match_eager_attentions(bart, kind):
    _, maps, _, out = bart if kind == "bart" else captured_seq2seq("t5", src=5, tgt=4)
    assert sections(maps) == [("Encoder self", [0, 1]), ("Decoder self", [2, 4]), ("Cross", [3, 5])]
    document = head_view(maps, ENCODER, decoder_tokens=DECODER).html
    config = config_of(document)
    assert [s["name"] for s in config["sections"]] == ["Encoder self", "Decoder self", "Cross"]
    assert config["initial"]["section"] == 0
    eager = [out.encoder_attentions, out.decoder_attentions, out.cross_attentions]
    for number, expected in enumerate(eager):
        back, section = section_maps(document, number)
        expected = torch.stack([a[0] for a in expected]).numpy()
        assert back.shape == expected.shape and close(back, expected, section["maps"])


def test_bart_section_tokens_and_selection(bart):
    _, maps, _, _ = bart
    document = head_view(maps, ENCODER, decoder_tokens=DECODER).html
    _, cross = section_maps(document, 2)
    assert cross["layers"] == ["model.decoder.layers.0.encoder_attn", "model.decoder.layers.1.encoder_attn"]
    assert cross["tokens"] == ["</s>", "le", "chat", "assis"]  # queries: the decoder's, prettified
    assert cross["raw_key_tokens"] == ENCODER  # keys: the encoder's
    # layer= opens the section holding it; layers= keeps only some.
    config = config_of(head_view(maps, ENCODER, decoder_tokens=DECODER, layer=5, head=[1]).html)
    assert config["initial"] == {"layer": 1, "section": 2, "heads": [1], "mean": False}
    config = config_of(head_view(maps, ENCODER, decoder_tokens=DECODER, layers=[0, 3]).html)
    assert [(s["name"], s["layers"]) for s in config["sections"]] == [
        ("Encoder self", ["model.encoder.layers.0.self_attn"]),
        ("Cross", ["model.decoder.layers.0.encoder_attn"]),
    ]


def test_encoder_decoder_errors(bart):
    _, maps, _, _ = bart
    with pytest.raises(ValueError, match="pass decoder_tokens="):
        head_view(maps, ENCODER)
    with pytest.raises(ValueError, match=r"decoder_tokens has 3 entries but the maps have 4 queries"):
        head_view(maps, ENCODER, decoder_tokens=DECODER[:3])
    with pytest.raises(ValueError, match=r"tokens has 4 entries but the maps have 5 queries"):
        head_view(maps, ENCODER[:4], decoder_tokens=DECODER)
    with pytest.raises(ValueError, match="key_tokens= is not used for an encoder-decoder capture"):
        head_view(maps, ENCODER, decoder_tokens=DECODER, key_tokens=ENCODER)
    with pytest.raises(TypeError, match="decoder_tokens must be a list of strings"):
        head_view(maps, ENCODER, decoder_tokens="le chat")
    with pytest.raises(ValueError, match="layer 1 is not among the kept layers"):
        head_view(maps, ENCODER, decoder_tokens=DECODER, layers=[0, 3], layer=1)
    plain = [softmax_maps((1, 2, 5, 5))]
    with pytest.raises(ValueError, match="these maps declare no cross-attention"):
        head_view(plain, ENCODER, decoder_tokens=DECODER)


def test_nn_transformer_sections_match_need_weights():
    from visualizer import capture_attention

    torch.manual_seed(0)
    model = torch.nn.Transformer(
        d_model=16,
        nhead=2,
        num_encoder_layers=2,
        num_decoder_layers=1,
        dim_feedforward=32,
        dropout=0.0,
        batch_first=True,
    ).eval()
    src, tgt = torch.randn(1, 6, 16), torch.randn(1, 3, 16)
    inputs = {}
    hooks = [
        module.register_forward_pre_hook(
            lambda module, args, kwargs, name=name: inputs.setdefault(name, (args, kwargs)), with_kwargs=True
        )
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.MultiheadAttention)
    ]
    mask = model.generate_square_subsequent_mask(3)
    with capture_attention(model) as maps, torch.no_grad():
        model(src, tgt, tgt_mask=mask, tgt_is_causal=True)
    for hook in hooks:
        hook.remove()
    names = (
        ["encoder.layers.0.self_attn", "encoder.layers.1.self_attn"],
        ["decoder.layers.0.self_attn"],
        ["decoder.layers.0.multihead_attn"],
    )
    document = head_view(maps, [f"s{i}" for i in range(6)], decoder_tokens=["a", "b", "c"], head="all").html
    for number, paths in enumerate(names):
        back, section = section_maps(document, number)
        assert section["layers"] == paths
        expected = []
        for path in paths:
            args, kwargs = inputs[path]
            kwargs = {**kwargs, "need_weights": True, "average_attn_weights": False}
            kwargs.pop("is_causal", None)
            with torch.no_grad():
                expected.append(dict(model.named_modules())[path](*args, **kwargs)[1][0])
        expected = torch.stack(expected).numpy()
        assert close(back, expected, section["maps"])
    decoder_self, _ = section_maps(document, 1)
    assert np.allclose(np.triu(decoder_self[0, 0], 1), 0, atol=1e-6)  # causal, as asked


def test_the_selector_switches_token_sets(browser, bart, tmp_path):
    _, maps, _, _ = bart
    page = browser.new_page(width=1000, height=700)
    view = head_view(maps, ENCODER, decoder_tokens=DECODER, head="all", title="BART")
    open_view(page, view.save(tmp_path / "bart.html"))

    def columns():
        return page.evaluate(
            "['.tvz-left', '.tvz-right'].map(side => [...document.querySelectorAll(side + ' .tvz-text')]"
            ".map(t => t.textContent))"
        )

    assert columns() == [["<s>", "the", "cat", "sat", "</s>"]] * 2
    assert state(page)["section"] == "0"
    encoder_lines = state(page)["lines"]
    for number, expected in [(2, [DECODER, ENCODER]), (1, [DECODER, DECODER])]:
        page.evaluate(
            f"(() => {{ const s = document.querySelector('.tvz-section'); s.value = '{number}';"
            "s.dispatchEvent(new Event('change')); })()"
        )
        page.wait_for(f"document.querySelector('.tvz').dataset.section === '{number}'")
        shown = [[t.lstrip("Ġ") for t in side] for side in expected]
        assert columns() == shown
        layers = page.evaluate("[...document.querySelectorAll('.tvz-layer option')].map(o => o.textContent)")
        assert layers == config_of(view.html)["sections"][number]["layers"]
    assert state(page)["lines"] != encoder_lines
    # Hover a decoder token of the decoder self-attention: causal, so no line to a later key.
    page.move_mouse(*page.center_of(".tvz-left .tvz-token", 1))
    shown = page.evaluate("[...document.querySelectorAll('.tvz-right .tvz-weight')].map(w => w.textContent)")
    assert [float(w) for w in shown][2:] == [0.0, 0.0]
    page.browser.pump(0.1)
    assert page.errors == []
    browser.send("Target.closeTarget", {"targetId": page.target})
    browser.pages.remove(page)
