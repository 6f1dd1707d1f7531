"""bertviz's documented calls, written out from its README and notebooks, with only the import swapped.

``from bertviz import head_view, model_view`` becomes ``from visualizer.view import ...``; every
call runs as written and means what it means in bertviz 1.4: ``heads`` ticks heads (the others
stay selectable), ``include_layers`` / ``include_heads`` select what the page holds,
``sentence_b_start`` adds the sentence filter, the encoder-decoder keyword form builds the
three sections, ``prettify_tokens``, ``display_mode`` and ``html_action`` do what they say.
What each page offers is read in Chromium, not only in the HTML source. The models are a
random BERT (MiniLM's shape and its real WordPiece tokenizer) and a tiny random BART, eager.
"""

import pytest
import torch
from analysis.declared_maps import captured_seq2seq
from view_data import config_of, open_view, state

from visualizer.view import head_view, model_view

SENTENCE_A, SENTENCE_B = "The cat sat on the mat", "The cat lay on the rug"


@pytest.fixture(scope="module")
def bert():
    from visualizer.models import load_bert

    model, tokenizer = load_bert(pretrained=False)  # random weights, MiniLM's tokenizer
    model.set_attn_implementation("eager")
    inputs = tokenizer.encode(SENTENCE_A, SENTENCE_B, return_tensors="pt")  # bertviz's README, as written
    with torch.no_grad():
        outputs = model(inputs, output_attentions=True)
    attention = outputs[-2] if outputs[-1] == () else outputs[-1]  # transformers 5: [-1] is cross_attentions
    tokens = tokenizer.convert_ids_to_tokens(inputs[0])
    sentence_b_start = tokens.index("[SEP]") + 1
    return attention, tokens, sentence_b_start


@pytest.fixture(scope="module")
def bart():
    _, _, _, outputs = captured_seq2seq("bart", src=5, tgt=4)  # a tiny random BART's eager outputs
    return outputs, ["<s>", "a", "b", "c", "</s>"], ["</s>", "<s>", "x", "y"]


def test_the_readme_calls_run_and_hold_the_tokens(bert, bart):
    attention, tokens, sentence_b_start = bert
    outputs, encoder_tokens, decoder_tokens = bart
    views = [
        head_view(attention, tokens),
        head_view(attention, tokens, sentence_b_start),
        head_view(attention, tokens, layer=2, heads=[3]),
        head_view(attention, tokens, include_layers=[5, 4]),
        head_view(attention, tokens, prettify_tokens=False),
        head_view(attention, tokens, html_action="return"),
        model_view(attention, tokens),
        model_view(attention, tokens, sentence_b_start),
        model_view(attention, tokens, display_mode="light"),
        model_view(attention, tokens, include_layers=[4, 5]),
        model_view(attention, tokens, include_heads=[5, 6]),
    ]
    for number, view in enumerate(views):
        missing = [token for token in ("[CLS]", "[SEP]", "cat", "mat", "rug") if token not in view.data]
        assert not missing, (number, missing)
    seq2seq = dict(
        encoder_attention=outputs.encoder_attentions,
        decoder_attention=outputs.decoder_attentions,
        cross_attention=outputs.cross_attentions,
        encoder_tokens=encoder_tokens,
        decoder_tokens=decoder_tokens,
    )
    for view in (head_view(**seq2seq), model_view(**seq2seq)):
        assert all(name in view.html for name in ("Encoder self", "Decoder self", "Cross"))
    sections = config_of(head_view(**seq2seq).html)["sections"]
    assert [s["tokens"] for s in sections] == [encoder_tokens, decoder_tokens, decoder_tokens]
    assert sections[2]["key_tokens"] == encoder_tokens


def test_html_action_view_displays_and_returns_none(bert, monkeypatch):
    import IPython.display

    shown = []
    monkeypatch.setattr(IPython.display, "display", shown.append)
    attention, tokens, _ = bert
    assert head_view(attention, tokens, html_action="view") is None
    assert model_view(attention, tokens, html_action="view") is None
    assert [view.kind for view in shown] == ["head", "model"]
    assert head_view(attention, tokens).kind == "head"  # our default: the view itself, to save or show


def test_heads_tick_and_include_keeps_in_the_page(browser, bert, tmp_path):
    attention, tokens, _ = bert
    page = browser.new_page(width=1100, height=900)
    open_view(page, head_view(attention, tokens, layer=2, heads=[3]).save(tmp_path / "ticked.html"))
    assert (state(page)["layer"], state(page)["head"]) == ("2", "3")
    buttons = page.evaluate("document.querySelectorAll('.tvz-head:not(.tvz-mode)').length")
    assert buttons == 12  # every head still selectable, as in bertviz
    open_view(
        page,
        head_view(attention, tokens, include_layers=[5, 4], include_heads=[0, 2]).save(tmp_path / "k.html"),
    )
    options = page.evaluate("[...document.querySelectorAll('.tvz-layer option')].map(o => o.textContent)")
    assert (
        len(options) == 2
        and page.evaluate("document.querySelectorAll('.tvz-head:not(.tvz-mode)').length") == 2
    )
    open_view(
        page,
        model_view(attention, tokens, include_layers=[4, 5], include_heads=[5, 6]).save(tmp_path / "m.html"),
    )
    rows = page.evaluate("document.querySelectorAll('.tvz-grid-row:not(.tvz-grid-head)').length")
    columns = page.evaluate("[...document.querySelectorAll('.tvz-col-label')].map(c => c.textContent)")
    assert rows == 2 and columns == ["head 5", "head 6"]
    open_view(page, model_view(attention, tokens, display_mode="light").save(tmp_path / "light.html"))
    assert state(page)["themeMode"] == "light"
    open_view(page, head_view(attention, tokens, prettify_tokens=False).save(tmp_path / "raw.html"))
    shown = page.evaluate("[...document.querySelectorAll('.tvz-left .tvz-text')].map(t => t.textContent)")
    assert shown == tokens  # the raw pieces: [CLS], ##-pieces as they are
    assert page.errors == []
    browser.send("Target.closeTarget", {"targetId": page.target})
    browser.pages.remove(page)


def test_the_sentence_filter_shows_each_pair_of_sentences(browser, bert, tmp_path):
    attention, tokens, b = bert
    page = browser.new_page(width=1100, height=900)
    open_view(page, head_view(attention, tokens, b, layer=1, heads=[0, 5]).save(tmp_path / "pair.html"))
    choices = page.evaluate("[...document.querySelectorAll('.tvz-section option')].map(o => o.textContent)")
    assert choices == [
        "All",
        "Sentence A \u2192 Sentence A",
        "Sentence B \u2192 Sentence B",
        "Sentence A \u2192 Sentence B",
        "Sentence B \u2192 Sentence A",
    ]

    def sides():
        return page.evaluate(
            "['.tvz-left', '.tvz-right'].map(side => [...document.querySelectorAll(side + ' .tvz-text')]"
            ".map(t => t.textContent))"
        )

    shown = sides()
    assert len(shown[0]) == len(tokens)
    for number, (left, right) in {3: (tokens[:b], tokens[b:]), 4: (tokens[b:], tokens[:b])}.items():
        page.evaluate(
            f"(() => {{ const s = document.querySelector('.tvz-section'); s.value = '{number}';"
            "s.dispatchEvent(new Event('change')); })()"
        )
        page.wait_for(f"document.querySelector('.tvz').dataset.section === '{number}'")
        assert [len(side) for side in sides()] == [len(left), len(right)]
        assert state(page)["layer"] == "1" and state(page)["head"] == "0,5"
    # The A -> B weights are the map's rows of A and columns of B, as bertviz cuts them.
    section = config_of(head_view(attention, tokens, b).html)["sections"][3]
    assert section["raw_tokens"] == tokens[:b] and section["raw_key_tokens"] == tokens[b:]

    open_view(page, model_view(attention, tokens, b).save(tmp_path / "pair_model.html"))
    visible = (
        "[...document.querySelectorAll('.tvz-grid-row:not(.tvz-grid-head)')].filter(r => r.offsetParent)"
    )
    assert page.evaluate(f"{visible}.length") == 6 and state(page)["section"] == "All"
    page.evaluate(
        "(() => { const s = document.querySelector('.tvz-section'); s.value = 'Sentence B \u2192 Sentence A';"
        "s.dispatchEvent(new Event('change')); })()"
    )
    assert (
        page.evaluate(f"{visible}.length") == 6 and state(page)["section"] == "Sentence B \u2192 Sentence A"
    )
    page.evaluate(f"{visible}[2].querySelectorAll('.tvz-thumb')[1].click()")
    page.wait_for("document.querySelector('.tvz-sub') && document.querySelector('.tvz-sub').dataset.head")
    left = page.evaluate("[...document.querySelectorAll('.tvz-sub .tvz-left .tvz-text')].length")
    right = page.evaluate("[...document.querySelectorAll('.tvz-sub .tvz-right .tvz-text')].length")
    assert (left, right) == (len(tokens) - b, b)
    assert page.errors == []
    browser.send("Target.closeTarget", {"targetId": page.target})
    browser.pages.remove(page)


def test_model_view_takes_key_tokens_for_plain_cross_attention(bart):
    outputs, encoder_tokens, decoder_tokens = bart
    view = model_view(outputs.cross_attentions, decoder_tokens, key_tokens=encoder_tokens)
    sets = config_of(view.html)["token_sets"]["self"]
    assert sets["raw_tokens"] == decoder_tokens and sets["raw_key_tokens"] == encoder_tokens
    with pytest.raises(ValueError, match="key_tokens has 4 entries but attentions\\[0\\] has 5 keys"):
        model_view(outputs.cross_attentions, decoder_tokens, key_tokens=decoder_tokens)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (
            lambda a, t: head_view(a, t, head=1, heads=[2]),
            ValueError,
            "head= and heads= .bertviz's name. .*disagree",
        ),
        (
            lambda a, t: head_view(a, t, layers=[1], include_layers=[2]),
            ValueError,
            "layers= and include_layers=",
        ),
        (lambda a, t: head_view(a, attention=a[:2], tokens=t), ValueError, "attentions= and attention="),
        (
            lambda a, t: head_view(a, t, scheme="wordpiece", prettify_tokens=False),
            ValueError,
            "scheme= and prettify",
        ),
        (lambda a, t: head_view(a, t, 0), ValueError, "sentence_b_start must be from 1 to"),
        (lambda a, t: head_view(a, t, "5"), TypeError, "sentence_b_start must be an int"),
        (
            lambda a, t: model_view(a, t, display_mode="blue"),
            ValueError,
            "display_mode must be 'light', 'dark'",
        ),
        (lambda a, t: model_view(a, t, html_action="show"), ValueError, "html_action must be None"),
        (lambda a, t: model_view(a, t, heads=[1]), TypeError, "heads= is now include_heads="),
        (
            lambda a, t: head_view(a, t, prettify_tokens="no"),
            TypeError,
            "prettify_tokens must be True or False",
        ),
        (lambda a, t: head_view(a, encoder_attention=a), ValueError, "pass the maps once"),
        (lambda a, t: head_view(tokens=t), TypeError, "pass the attention maps"),
    ],
)
def test_what_both_names_say_must_agree(bert, call, error, match):
    attention, tokens, _ = bert
    with pytest.raises(error, match=match):
        call(attention, tokens)
