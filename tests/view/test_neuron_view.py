"""neuron_view() in Python: its stored queries and keys give the eager attention weights, and its errors.

The cross-check: from the view's payload alone, the elementwise products of each query and
key, summed, times the scale, plus the stored mask, softmaxed over each row (numpy, written
here), must equal transformers' eager ``output_attentions`` of the same model to 1e-5: a
tiny Llama with grouped-query heads and rotary embeddings (causal), and a tiny BERT with a
padded batch item (a mask matrix).
"""

import base64
import zlib

import numpy as np
import pytest
import torch
from tiny_models import tiny_llama
from view_data import config_of, embedded

from visualizer import capture_attention
from visualizer.view import neuron_view


def _decode(view):
    config = config_of(view.html)
    queries, keys, dim = config["maps"]["shape"]
    raw = np.frombuffer(zlib.decompress(base64.b64decode(embedded(view.html, "tvz-data"))), dtype="<f4")
    q = raw[: queries * dim].reshape(queries, dim).astype(np.float64)
    k = raw[queries * dim : (queries + keys) * dim].reshape(keys, dim).astype(np.float64)
    mask, rest = config["maps"]["mask"], raw[(queries + keys) * dim :].astype(np.float64)
    bias = {"none": np.zeros((queries, keys)), "keys": np.tile(rest, (queries, 1))}.get(mask)
    if mask == "matrix":
        bias = rest.reshape(queries, keys)
    if config["maps"]["causal"]:
        bias = np.where(np.triu(np.ones((queries, keys)), 1) > 0, -np.inf, bias)
    return config, q, k, bias


def _weights(config, q, k, bias):
    logits = (q[:, None, :] * k[None, :, :]).sum(-1) * config["scale"] + bias
    top = logits.max(-1, keepdims=True)
    exp = np.exp(logits - np.where(np.isfinite(top), top, 0))
    total = exp.sum(-1, keepdims=True)
    return np.where(total > 0, exp / np.where(total > 0, total, 1), 0)


def _llama():
    return tiny_llama(initializer_range=0.2)


def _bert():
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64
    )
    return BertModel(config).eval()


def _eager(model, **inputs):
    model.set_attn_implementation("eager")
    with torch.no_grad():
        attentions = model(**inputs, output_attentions=True).attentions
    model.set_attn_implementation("sdpa")
    return attentions


def test_products_give_the_eager_weights_of_a_llama_with_grouped_query_heads():
    model = _llama()
    ids = torch.randint(3, 100, (1, 9))
    reference = _eager(model, input_ids=ids)
    with torch.no_grad(), capture_attention(model) as maps:
        model(input_ids=ids)
    tokens = [f"▁t{i}" for i in range(9)]
    for head in range(4):
        view = neuron_view(maps, tokens, layer=1, head=head)
        config, q, k, bias = _decode(view)
        assert config["key_head"] == head // 2 and config["scale"] == pytest.approx(1 / 4)
        np.testing.assert_allclose(_weights(config, q, k, bias), reference[1][0, head].numpy(), atol=1e-5)
        expected = reference[1][0, head, 8]
        assert config["initial"] == {"query": 8, "key": int(expected.argmax())}


def test_products_give_the_eager_weights_of_a_padded_bert_item():
    model = _bert()
    ids = torch.randint(3, 100, (2, 7))
    mask = torch.tensor([[1] * 7, [1] * 5 + [0] * 2])
    reference = _eager(model, input_ids=ids, attention_mask=mask)
    with torch.no_grad(), capture_attention(model) as maps:
        model(input_ids=ids, attention_mask=mask)
    tokens = ["[CLS]", "a", "##b", "c", "[SEP]", "[PAD]", "[PAD]"]
    view = neuron_view(maps, tokens, layer=0, head=2, batch=1, query=1, key=3)
    config, q, k, bias = _decode(view)
    assert config["maps"]["mask"] == "keys" and not config["maps"]["causal"] and np.isinf(bias[:, 5:]).all()
    np.testing.assert_allclose(_weights(config, q, k, bias), reference[0][1, 2].numpy(), atol=1e-5)
    assert config["initial"] == {"query": 1, "key": 3}
    assert config["text"][2] == "b"


def test_a_left_padded_llama_item_keeps_one_mask_value_per_key():
    model = _llama()
    ids = torch.randint(3, 100, (2, 8))
    mask = torch.tensor([[0, 0] + [1] * 6, [1] * 8])
    reference = _eager(model, input_ids=ids, attention_mask=mask)
    with torch.no_grad(), capture_attention(model) as maps:
        model(input_ids=ids, attention_mask=mask)
    view = neuron_view(maps, ["a"] * 8, layer=1, head=1, batch=0)
    config, q, k, bias = _decode(view)
    assert config["maps"]["mask"] == "keys" and config["maps"]["causal"]
    seen = mask[0].bool().numpy()  # padding rows see no key: zero rows, as the kernel gives
    np.testing.assert_allclose(
        _weights(config, q, k, bias)[seen], reference[1][0, 1].numpy()[seen], atol=1e-5
    )
    assert not _weights(config, q, k, bias)[~seen].any()


def test_a_mask_that_differs_by_row_is_kept_whole():
    from visualizer._lazy import Recipe
    from visualizer.view._neuron_view import _mask

    query, key = torch.randn(1, 2, 5, 4), torch.randn(1, 2, 5, 4)
    slopes = -torch.arange(5.0)[:, None] + torch.arange(5.0)[None, :]  # ALiBi-like: differs by row
    mode, causal, values = _mask(Recipe(query, key, (slopes,), causal=True), 0, 1, 5, 5)
    assert mode == "matrix" and not causal and values.shape == (5, 5)
    np.testing.assert_array_equal(np.isneginf(values), np.triu(np.ones((5, 5)), 1) > 0)
    assert _mask(Recipe(query, key, (), causal=True), 0, 1, 5, 5) == ("none", True, None)


def test_an_eager_capture_says_to_capture_with_the_sdpa_kernel():
    model = _llama()
    with torch.no_grad(), capture_attention(model, lazy=False) as maps:
        model(input_ids=torch.randint(3, 100, (1, 5)))
    with pytest.raises(ValueError, match="captured eagerly.*queries and keys.*sdpa kernel"):
        neuron_view(maps, ["a"] * 5, layer=0)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"head": 4}, IndexError, "head 4 is out of range"),
        ({"layer": 2}, IndexError, "layer 2 is out of range"),
        ({"layer": 1.0}, TypeError, "layer must be an int"),
        ({"query": 5}, IndexError, "query 5 is out of range"),
        ({"key": -6}, IndexError, "key -6 is out of range"),
        ({"batch": 1}, IndexError, "batch"),
        ({"tokens": ["a"] * 4}, ValueError, "tokens has 4 entries"),
        ({"tokens": [1, 2, 3, 4, 5]}, TypeError, "convert_ids_to_tokens"),
        ({"title": b"x"}, TypeError, "title must be a str"),
    ],
)
def test_bad_arguments_are_refused_with_the_cause(kwargs, error, match):
    model = _llama()
    with torch.no_grad(), capture_attention(model) as maps:
        model(input_ids=torch.randint(3, 100, (1, 5)))
    arguments = {"tokens": ["a", "b", "c", "d", "e"], "layer": 0, **kwargs}
    tokens = arguments.pop("tokens")
    with pytest.raises(error, match=match):
        neuron_view(maps, tokens, **arguments)


def test_a_generation_capture_asks_for_one_forward():
    model = _llama()
    with torch.no_grad(), capture_attention(model) as maps:
        model.generate(
            input_ids=torch.randint(3, 100, (1, 4)), max_new_tokens=2, do_sample=False, pad_token_id=0
        )
    with pytest.raises(ValueError, match="ran 2 times.*one forward"):
        neuron_view(maps, ["a"] * 5, layer=0)


def test_plain_maps_are_refused_they_hold_no_vectors():
    with pytest.raises(TypeError, match="AttentionMaps of capture_attention"):
        neuron_view([np.ones((1, 2, 3, 3))], ["a", "b", "c"], layer=0)
