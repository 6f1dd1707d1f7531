"""text_view() in Python: the compact payload against the maps, the inputs it reads, and its errors.

The payload is checked against the maps with numpy written here (top-k by a full sort, bins
by slicing), and a lazily captured tiny Llama must give the same view as its eager maps,
without its layers ever being built whole.
"""

import numpy as np
import pytest
import torch
from tiny_models import tiny_llama
from view_data import config_of, embedded, softmax_maps

from visualizer import capture_attention
from visualizer._blockwise import ROWS
from visualizer._lazy import Recipe
from visualizer.view import text_view
from visualizer.view._topk_codec import LEVELS, TopKEncoder, decode_rows

TOKENS = ["The", "Ġcat", "Ġsat", "Ġon", "Ġthe", "Ġmat", "."]


def _causal(shape, seed):
    maps = softmax_maps(shape, seed=seed) * np.tril(np.ones(shape[-2:], dtype=np.float32))
    return (maps / maps.sum(-1, keepdims=True)).astype(np.float32)


def _encode(rows, keep, width):
    encoder = TopKEncoder(rows.shape[0], rows.shape[1], keep, width)
    encoder.add(rows, np.arange(rows.shape[0]))
    return encoder.finish()


def test_codec_keeps_the_strongest_weights_and_the_binned_rest():
    rows = softmax_maps((40, 50), seed=1, sharpness=2.5)
    payload, meta = _encode(rows, keep=6, width=8)
    back = decode_rows(payload, meta)
    order = np.argsort(-rows, axis=1, kind="stable")[:, :6]
    top = np.take_along_axis(rows, order, 1)
    assert meta["kept_mass"] == pytest.approx(top.sum() / rows.sum(), rel=1e-6)
    row_max = rows.max(1, keepdims=True)
    bound = np.sqrt(top * row_max) / LEVELS + row_max / (4 * LEVELS**2) + row_max / 1024
    assert (np.abs(np.take_along_axis(back, order, 1) - top) <= bound).all()
    # The rest: each bin's sum, spread evenly over the bin's keys that are not kept.
    rest = rows.copy()
    np.put_along_axis(rest, order, 0, 1)
    kept = np.zeros_like(rows, dtype=bool)
    np.put_along_axis(kept, order, True, 1)
    for start in range(0, 50, 8):
        part = slice(start, start + 8)
        sums = rest[:, part].sum(1)
        bin_max = np.stack([rest[:, s : s + 8].sum(1) for s in range(0, 50, 8)], 1).max(1)
        got = np.where(kept[:, part], 0, back[:, part]).sum(1)
        assert np.all(np.abs(got - sums) <= 2 * np.sqrt(sums * bin_max) / LEVELS + bin_max / 1000 + 1e-7)
        for row in range(40):
            spread = back[row, part][~kept[row, part]]
            assert spread.size == 0 or spread.max() == spread.min()


def test_codec_spreads_a_causal_row_over_the_keys_it_sees():
    rows = _causal((1, 1, 30, 30), seed=3)[0, 0]
    payload, meta = _encode(rows, keep=4, width=8)
    back = decode_rows(payload, meta, causal_rows=np.arange(30))
    assert not np.triu(back, 1).any()
    np.testing.assert_allclose(back.sum(1), 1, atol=0.05)
    np.testing.assert_allclose(back[:4], rows[:4], atol=1 / LEVELS)  # rows with at most 4 keys: all kept


def test_view_states_what_it_kept_and_detects_causality():
    maps = [_causal((1, 2, 7, 7), seed=s) for s in range(2)]
    view = text_view(maps, TOKENS, keep=3, bin_width=4)
    config = config_of(view.html)
    flat = np.concatenate([m[0].reshape(-1, 7) for m in maps])
    top = -np.sort(-flat, axis=1)[:, :3]
    share = 100 * top.sum() / flat.sum()
    assert (
        f"{share:.1f}%" in config["kept"]
        and "3 strongest" in config["kept"]
        and "4-token bins" in config["kept"]
    )
    assert config["maps"]["causal"] is True and config["maps"]["shape"] == [2, 2, 7, 7]
    assert config["text"] == ["The", "cat", "sat", "on", "the", "mat", "."]
    assert config["space"] == "0111110" and config["raw"] == TOKENS
    assert config["initial"] == {"layer": 1, "head": "mean"}
    back = decode_rows(embedded(view.html, "tvz-data"), config["maps"], causal_rows=np.tile(np.arange(7), 4))
    assert back.shape == (28, 7)
    full = text_view([softmax_maps((2, 7, 7), seed=5)], TOKENS)
    assert config_of(full.html)["maps"]["causal"] is False
    assert "100.0%" in config_of(full.html)["kept"]  # 7 keys, 16 kept: everything


def _llama(layers=2):
    model = tiny_llama(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=layers,
        max_position_embeddings=1024,
        initializer_range=0.2,
    )
    model.set_attn_implementation("sdpa")
    return model


def test_lazy_maps_are_read_in_row_blocks_and_give_the_eager_view(monkeypatch):
    model = _llama()
    ids = torch.randint(3, 100, (1, ROWS + 40))
    with torch.no_grad(), capture_attention(model) as maps:
        model(ids)
    assert all(info.rebuilt for info in maps.infos)
    tokens = [f"Ġt{i}" for i in range(ids.shape[1])]
    eager = [maps[i] for i in range(len(maps))]
    expected = text_view(eager, tokens, heads=[3, 0])
    maps.cache_bytes = 0  # the whole maps built above are not kept: the view must read rows
    seen = []
    original = Recipe.rows

    def rows(self, queries=slice(None), heads=None):
        seen.append(len(range(*queries.indices(self.shape[2]))) if isinstance(queries, slice) else -1)
        return original(self, queries, heads)

    monkeypatch.setattr(Recipe, "rows", rows)
    monkeypatch.setattr(Recipe, "full", lambda *a, **k: pytest.fail("a layer was built whole"))
    view = text_view(maps, tokens, heads=[3, 0])
    assert seen and max(seen) <= ROWS
    assert embedded(view.html, "tvz-data") == embedded(expected.html, "tvz-data")
    assert config_of(view.html)["layers"] == maps.names
    assert config_of(view.html)["heads"] == ["3", "0"]


def test_generation_is_read_from_the_capture_or_the_stitched_maps():
    model = _llama()
    ids = torch.randint(3, 100, (1, 6))
    with torch.no_grad(), capture_attention(model) as maps:
        model.generate(input_ids=ids, max_new_tokens=5, min_new_tokens=5, do_sample=False, pad_token_id=0)
    tokens = [f"▁w{i}" for i in range(11)]  # prompt + 5 generated; the last one has no row
    view = text_view(maps, tokens, prompt_length=6)
    stitched = text_view([maps.generation(i) for i in range(len(maps))], tokens, prompt_length=6)
    assert embedded(view.html, "tvz-data") == embedded(stitched.html, "tvz-data")
    config = config_of(view.html)
    assert config["prompt_length"] == 6 and config["maps"]["shape"][2] == 10 and config["maps"]["causal"]
    assert "(6 prompt)" in repr(view)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"tokens": TOKENS[:5]}, ValueError, "tokens has 5 entries"),
        ({"tokens": "The cat"}, TypeError, "split it into tokens"),
        ({"tokens": list(range(7))}, TypeError, "convert_ids_to_tokens"),
        ({"prompt_length": 0}, ValueError, "prompt_length must be from 1 to 7"),
        ({"prompt_length": True}, TypeError, "prompt_length must be an int"),
        ({"keep": 0}, ValueError, "keep must be an int >= 1"),
        ({"bin_width": "8"}, TypeError, "bin_width must be an int"),
        ({"head": "all"}, ValueError, "head must be a head index or one of"),
        ({"head": 5}, IndexError, "head 5 is out of range"),
        ({"layers": [0], "layer": 1}, ValueError, "not among the kept layers"),
        ({"batch": 2}, IndexError, "batch"),
        ({"batch": 0.0}, TypeError, "batch must be an int"),
        ({"scheme": "bpe"}, ValueError, "scheme must be one of"),
        ({"title": 3}, TypeError, "title must be a str"),
    ],
)
def test_bad_arguments_are_refused_with_the_cause(kwargs, error, match):
    maps = [_causal((2, 2, 7, 7), seed=s) for s in range(2)]
    arguments = {"tokens": TOKENS, **kwargs}
    with pytest.raises(error, match=match):
        text_view(maps, **arguments)


def test_maps_that_are_not_self_attention_weights_are_refused():
    with pytest.raises(ValueError, match="3 queries but 7 keys"):
        text_view([softmax_maps((2, 3, 7), seed=0)], TOKENS[:3])
    negative = softmax_maps((1, 2, 7, 7), seed=0) - 0.5
    with pytest.raises(ValueError, match="softmax probabilities"):
        text_view([negative], TOKENS)
    with pytest.raises(ValueError, match="NaN"):
        text_view([np.full((2, 7, 7), np.nan, dtype=np.float32)], TOKENS)
    with pytest.raises(ValueError, match=r"shape \(7,\): a tuple or list holds layers"):
        text_view(np.full(7, 1 / 7), TOKENS)
