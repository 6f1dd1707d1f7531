"""capture_attention on nn.MultiheadAttention and nn.Transformer layers, fast path included."""

import pytest
import torch
from torch import nn

from visualizer import capture_attention


@pytest.fixture
def mha():
    torch.manual_seed(0)
    return nn.MultiheadAttention(8, 2, batch_first=True).eval()


def test_maps_equal_the_modules_own_per_head_weights(mha):
    x = torch.randn(3, 5, 8)
    memory = torch.randn(3, 7, 8)
    with torch.no_grad():
        _, expected = mha(x, memory, memory, need_weights=True, average_attn_weights=False)
        with capture_attention(mha) as maps:
            mha(x, memory, memory)
    assert maps[0].shape == (3, 2, 5, 7)
    torch.testing.assert_close(maps[0], expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(maps[0].sum(-1), torch.ones(3, 2, 5), atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    "call",
    [
        {},  # torch's defaults: need_weights=True, average_attn_weights=True
        {"need_weights": False},
        {"need_weights": True, "average_attn_weights": False},
    ],
    ids=["defaults", "no-weights", "per-head"],
)
def test_the_caller_gets_exactly_what_it_asked_for(mha, call):
    x = torch.randn(2, 4, 8)
    with torch.no_grad():
        expected_out, expected_weights = mha(x, x, x, **call)
        with capture_attention(mha) as maps:
            out, weights = mha(x, x, x, **call)
    torch.testing.assert_close(out, expected_out, atol=1e-6, rtol=0)
    if expected_weights is None:
        assert weights is None
    else:
        torch.testing.assert_close(weights, expected_weights, atol=1e-6, rtol=0)
    assert maps[0].shape == (2, 2, 4, 4)


def test_flags_passed_by_position_and_unbatched_or_sequence_first_inputs():
    torch.manual_seed(0)
    seq_first = nn.MultiheadAttention(8, 4).eval()  # batch_first=False: (length, batch, dim)
    x = torch.randn(5, 2, 8)
    with torch.no_grad(), capture_attention(seq_first) as maps:
        out, weights = seq_first(x, x, x, None, False)  # need_weights=False, by position
        seq_first(x[:, 0], x[:, 0], x[:, 0])  # unbatched: (length, dim)
    assert weights is None
    first, unbatched = maps.calls(0)
    assert first.shape == (2, 4, 5, 5) and unbatched.shape == (1, 4, 5, 5)
    torch.testing.assert_close(unbatched[0], first[0], atol=1e-6, rtol=0)


def test_transformer_in_eval_and_no_grad_with_padding_takes_no_fast_path(tiny_transformer):
    src, tgt = torch.randn(2, 6, 16), torch.randn(2, 4, 16)
    pad = torch.tensor([[False] * 6, [False] * 4 + [True] * 2])
    causal = nn.Transformer.generate_square_subsequent_mask(4)
    run = dict(src_key_padding_mask=pad, memory_key_padding_mask=pad, tgt_mask=causal)
    with torch.no_grad():
        expected_out = tiny_transformer(src, tgt, **run)
        with capture_attention(tiny_transformer) as maps:
            out = tiny_transformer(src, tgt, **run)
    assert len(maps) == 6
    structured = maps.structured()
    assert [list(layer) for layer in structured["encoder"]] == [["self_attention"]] * 2
    assert [list(layer) for layer in structured["decoder"]] == [["self_attention", "cross_attention"]] * 2
    assert structured["decoder"][1]["cross_attention"].shape == (2, 2, 4, 6)
    # each map is what its module computes for its own input, with the masks applied
    encoder_input = src
    for layer, attention in zip(tiny_transformer.encoder.layers, maps[:2]):
        with torch.no_grad():
            _, expected = layer.self_attn(
                encoder_input, encoder_input, encoder_input, key_padding_mask=pad, average_attn_weights=False
            )
            encoder_input = layer(encoder_input, src_key_padding_mask=pad)
        for b, real in enumerate(~pad):  # rows of padded queries are meaningless (the fast path zeroes them)
            torch.testing.assert_close(attention[b][:, real], expected[b][:, real], atol=1e-5, rtol=0)
    assert maps[1][1, :, :, 4:].abs().max() == 0  # padded keys get no attention
    assert torch.tril(maps["decoder.layers.0.self_attn"][0, 0]).sum(-1).allclose(torch.ones(4))  # causal
    torch.testing.assert_close(out, expected_out, atol=1e-5, rtol=0)


def test_a_padded_encoder_batch_keeps_torchs_nested_fast_path_and_its_exact_outputs():
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(16, 2, 32, batch_first=True)
    encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=True).eval()
    src = torch.randn(2, 6, 16)
    pad = torch.tensor([[False] * 6, [False] * 4 + [True] * 2])
    with torch.no_grad():
        expected = encoder(src, src_key_padding_mask=pad)
        with capture_attention(encoder) as maps:
            out = encoder(src, src_key_padding_mask=pad)
    torch.testing.assert_close(out, expected, atol=0, rtol=0)  # padded positions too (zeros)
    assert maps[0].shape == (2, 2, 6, 6)
    torch.testing.assert_close(maps[1][1, :, :4].sum(-1), torch.ones(2, 4), atol=1e-6, rtol=0)
    assert maps[1][1, :, 4:].abs().max() == 0 and maps[1][1, :, :, 4:].abs().max() == 0


def test_select_modules_by_regex_on_their_names(tiny_transformer):
    src, tgt = torch.randn(1, 6, 16), torch.randn(1, 4, 16)
    with (
        torch.no_grad(),
        capture_attention(tiny_transformer, layers=r"decoder\.layers\.\d+\.multihead_attn") as maps,
    ):
        tiny_transformer(src, tgt)
    assert maps.names == ["decoder.layers.0.multihead_attn", "decoder.layers.1.multihead_attn"]
    assert [info.index for info in maps.infos] == [3, 5]
    assert maps.structured() == {"decoder": [{"cross_attention": maps[0]}, {"cross_attention": maps[1]}]}


def test_attention_inside_a_custom_module_in_training_mode():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.attention = nn.MultiheadAttention(8, 2, batch_first=True)
            self.norm = nn.LayerNorm(8)

        def forward(self, x):
            return self.norm(x + self.attention(x, x, x, need_weights=False)[0])

    torch.manual_seed(0)
    model = nn.Sequential(Block(), Block())
    x = torch.randn(2, 3, 8, requires_grad=True)
    with capture_attention(model, keep_grad=True) as maps:
        model(x).sum().backward()
    assert maps.names == ["0.attention", "1.attention"]
    assert maps[1].grad_fn is not None


@pytest.mark.parametrize("grad", [False, True])
def test_nested_and_overlapping_captures_of_one_encoder_all_get_the_maps(grad):
    torch.manual_seed(0)
    encoder = nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, 16, batch_first=True), 2).eval()
    x = torch.randn(1, 5, 8)
    with torch.set_grad_enabled(grad):
        expected = encoder(x)
        with capture_attention(encoder) as outer:
            with capture_attention(encoder, layers=[1]) as inner:
                out = encoder(x)
            encoder(x)  # the outer capture alone
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
    assert len(inner) == 1 and len(outer.calls(1)) == 2 and len(outer.calls(0)) == 2
    assert inner[0] is outer.calls(1)[0] or torch.equal(inner[0], outer.calls(1)[0])
    layer = encoder.layers[1].self_attn
    _, reference = layer(x := encoder.layers[0](x), x, x, need_weights=True, average_attn_weights=False)
    torch.testing.assert_close(inner[0], reference, atol=1e-6, rtol=0)
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in encoder.modules())


@pytest.mark.parametrize("threads", ["own", "all"])
def test_another_threads_calls_are_kept_out_unless_asked_for(threads):
    import threading

    torch.manual_seed(0)
    encoder = nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, 16, batch_first=True), 2).eval()
    started, stop = threading.Event(), threading.Event()
    other_calls = []

    def serve():
        while not stop.is_set():
            with torch.no_grad():
                encoder(torch.randn(1, 3, 8))
            other_calls.append(1)
            started.set()

    worker = threading.Thread(target=serve)
    worker.start()
    try:
        started.wait(10)
        with torch.no_grad(), capture_attention(encoder, threads=threads) as maps:
            before = len(other_calls)
            encoder(torch.randn(1, 5, 8))
            while len(other_calls) < before + 3:  # the other thread runs the model meanwhile
                stop.wait(0.001)
    finally:
        stop.set()
        worker.join()
    if threads == "own":
        assert len(maps) == 2 and maps[0].shape == (1, 2, 5, 5)
    else:
        calls = maps.calls(0)
        assert len(calls) >= 3 and {tuple(c.shape[-2:]) for c in calls} == {(5, 5), (3, 3)}
    with pytest.raises(ValueError, match="threads must be 'own' or 'all'"):
        capture_attention(encoder, threads="mine")
