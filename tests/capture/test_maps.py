"""AttentionMaps: lookup, iteration, stacking and structure, and the errors that explain a miss."""

import pytest
import torch
from torch import nn

from visualizer import AttentionMaps, capture_attention


@pytest.fixture
def captured(tiny_transformer):
    src, tgt = torch.randn(2, 6, 16), torch.randn(2, 4, 16)
    with torch.no_grad(), capture_attention(tiny_transformer) as maps:
        tiny_transformer(src, tgt)
    return maps


def test_sequence_of_maps_in_model_order(captured):
    assert isinstance(captured, AttentionMaps) and len(captured) == 6
    assert captured.names[:3] == [
        "encoder.layers.0.self_attn",
        "encoder.layers.1.self_attn",
        "decoder.layers.0.self_attn",
    ]
    assert [tuple(m.shape) for m in captured][2:4] == [(2, 2, 4, 4), (2, 2, 4, 6)]
    assert [name for name, _ in captured.items()] == captured.names
    assert captured[3] is captured["decoder.layers.0.multihead_attn"] is captured[-3]
    assert captured[0:2] == [captured[0], captured[1]]
    assert "encoder.layers.0.self_attn" in captured and 5 in captured and "nope" not in captured


def test_lookup_errors_name_what_exists(captured):
    with pytest.raises(
        KeyError, match=r"'encoder.layers.9' was not captured; selected layers: \[0\] encoder"
    ):
        captured["encoder.layers.9"]
    with pytest.raises(IndexError, match=r"layer 6 is out of range: 6 layers were captured \(0..5\)"):
        captured[6]
    with pytest.raises(
        IndexError, match=r"attention module 6 is out of range: Transformer has 6 attention modules \(0..5\)"
    ):
        captured.at(6)
    with pytest.raises(TypeError, match=r"position \(int\) or module path \(str\)"):
        captured[1.0]
    with pytest.raises(IndexError, match="1 call.* call 1 is out of range"):
        captured[0, 1]


def test_stack_and_structure(captured):
    with pytest.raises(
        ValueError, match=r"different shapes or layouts: encoder.layers.0.self_attn \(2, 2, 6, 6\)"
    ):
        captured.stack()
    structured = captured.structured()
    assert structured["decoder"][0]["cross_attention"] is captured[3]
    assert len(structured["encoder"]) == 2 and len(structured["decoder"]) == 2


def test_every_call_is_kept_and_a_layer_that_ran_twice_asks_which(tiny_transformer):
    encoder = tiny_transformer.encoder
    first, second = torch.randn(1, 5, 16), torch.randn(1, 5, 16)
    with torch.no_grad(), capture_attention(encoder) as maps:
        encoder(first)
        encoder(second)
    assert len(maps.calls(0)) == 2
    assert maps.stack(call=0).shape == (2, 1, 2, 5, 5)
    assert not torch.equal(maps[0, 0], maps[0, 1])
    with pytest.raises(ValueError, match="ran 2 times during capture"):
        list(maps)
    maps.clear()
    assert len(maps) == 0


def test_max_calls_keeps_the_latest(tiny_transformer):
    encoder = tiny_transformer.encoder
    inputs = [torch.randn(1, 5, 16) for _ in range(4)]
    with torch.no_grad(), capture_attention(encoder, max_calls=2, layers=0) as maps:
        for x in inputs:
            encoder(x)
    with torch.no_grad(), capture_attention(encoder, layers=0) as every:
        for x in inputs:
            encoder(x)
    assert [torch.equal(a, b) for a, b in zip(maps.calls(0), every.calls(0)[2:])] == [True, True]
    assert maps.info(0).calls == 2


def test_repr_summarises(captured):
    text = repr(captured)
    assert text.startswith("<AttentionMaps of Transformer: 6 layers")
    assert "[3] decoder.layers.0.multihead_attn: decoder cross-attention (2, 2, 4, 6)" in text


def test_a_bare_attention_module_is_its_own_only_layer():
    mha = nn.MultiheadAttention(4, 1)
    with capture_attention(mha) as maps:
        mha(torch.randn(3, 4), torch.randn(3, 4), torch.randn(3, 4))
    assert maps.names == [""] and maps[0].shape == (1, 1, 3, 3)
    assert "'' (the model itself)" in repr(maps)


def test_negative_indices_count_back_from_the_models_last_attention_module(tiny_transformer):
    src, tgt = torch.randn(1, 6, 16), torch.randn(1, 4, 16)
    with torch.no_grad(), capture_attention(tiny_transformer, layers=[0, 1]) as maps:
        tiny_transformer(src, tgt)
    assert maps[-2] is maps[0] and maps.at(-6) is maps[0] and maps[-1] is maps.at(1)
    with pytest.raises(KeyError, match="attention module -1 was not captured"):
        maps.at(-1)  # the model's last attention module, decoder.layers.1.multihead_attn: not selected


def test_positions_count_captured_layers_and_the_sequence_protocol_holds(tiny_transformer):
    src, tgt = torch.randn(1, 6, 16), torch.randn(1, 4, 16)
    with torch.no_grad(), capture_attention(tiny_transformer, layers=[3, 5]) as maps:
        tiny_transformer(src, tgt)
    assert len(maps) == 2 and list(reversed(maps)) == [maps[1], maps[0]]
    assert maps.index(maps[1]) == 1 and maps.index("decoder.layers.0.multihead_attn") == 0
    assert maps.count(maps[0]) == 1 and maps.count(torch.zeros(1)) == 0
    assert [info.index for info in maps.infos] == [3, 5] and maps.at(5) is maps[1]
    with pytest.raises(ValueError, match="not a captured map"):
        maps.index(torch.zeros(1))
    with pytest.raises(TypeError, match="or from plain maps with AttentionMaps.from_arrays"):
        AttentionMaps([])


def test_each_layer_carries_its_declared_structure(captured):
    infos = {info.path: info for info in captured.infos}
    cross = infos["decoder.layers.1.multihead_attn"]
    assert (cross.role, cross.kind, cross.block, cross.depth, cross.index) == (
        "decoder",
        "cross",
        "decoder.layers.1",
        1,
        5,
    )
    assert cross.layout.name == "tokens" and cross.adapter == "torch" and cross.calls == 1
    encoder = infos["encoder.layers.0.self_attn"]
    assert (encoder.role, encoder.kind, encoder.block, encoder.depth) == (
        "encoder",
        "self",
        "encoder.layers.0",
        0,
    )
    with pytest.raises(AttributeError):
        cross.role = "encoder"  # read-only
