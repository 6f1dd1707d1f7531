"""Analysis reads what an AttentionMaps declares, guesses nothing, and refuses layouts it cannot use."""

import json
import math

import numpy as np
import pytest
from analysis.declared_maps import (
    build,
    captured_seq2seq,
    captured_swin,
    captured_vit,
    captured_xcit,
    info,
    softmax,
)

from visualizer import LayoutError
from visualizer._structure import TOKENS, Windows
from visualizer.analysis import attention_stats, entropy, mean_attention_distance, rollout, top_k_pairs


@pytest.fixture(scope="module")
def bart():
    return captured_seq2seq("bart")


@pytest.fixture(scope="module")
def swin():
    return captured_swin()


@pytest.fixture(scope="module")
def vit():
    pytest.importorskip("timm")
    maps = captured_vit()
    return maps


def _row_entropy(a: np.ndarray) -> float:
    """Mean over all rows of -sum p log p, written out."""
    rows = a.reshape(-1, a.shape[-1]).astype(np.float64)
    return float(np.mean([-sum(p * math.log(p) for p in row if p > 0) for row in rows]))


# -- attention_stats -----------------------------------------------------------------------------


def test_stats_of_a_captured_bart_report_what_its_capture_declared(bart):
    _, maps, _, out = bart
    stats = attention_stats(maps)
    assert json.loads(json.dumps(stats, allow_nan=False)) == stats
    got = [(e["name"], e["stack"], e["layer"], e["type"], e["block"], e["layout"]) for e in stats["layers"]]
    assert got == [
        ("model.encoder.layers.0.self_attn", "encoder", 0, "self", "model.encoder.layers.0", "tokens"),
        ("model.encoder.layers.1.self_attn", "encoder", 1, "self", "model.encoder.layers.1", "tokens"),
        ("model.decoder.layers.0.self_attn", "decoder", 0, "self", "model.decoder.layers.0", "tokens"),
        ("model.decoder.layers.0.encoder_attn", "decoder", 0, "cross", "model.decoder.layers.0", "tokens"),
        ("model.decoder.layers.1.self_attn", "decoder", 1, "self", "model.decoder.layers.1", "tokens"),
        ("model.decoder.layers.1.encoder_attn", "decoder", 1, "cross", "model.decoder.layers.1", "tokens"),
    ]
    # The numbers, against the eager forward's output_attentions in the same order.
    eager = [*out.encoder_attentions]
    for self_attention, cross in zip(out.decoder_attentions, out.cross_attentions):
        eager += [self_attention, cross]
    for entry, reference in zip(stats["layers"], eager):
        a = reference.numpy()
        assert entry["shape"] == list(a.shape) and entry["call"] == 0
        np.testing.assert_allclose([entry["mean"], entry["max"]], [a.mean(), a.max()], rtol=1e-5)
        np.testing.assert_allclose(entry["entropy"], _row_entropy(a), rtol=1e-5)


def test_stats_take_role_and_kind_from_the_declaration_not_from_the_path():
    a, b = softmax(1, 2, 3, 3), softmax(1, 2, 3, 5, seed=1)
    maps = build(
        [
            (info("decoder.cross_attn", 0, role=None, kind="self", block="blocks.4", depth=4), [a]),
            (info("encoder.self", 1, role="decoder", kind="cross", block="blocks.7", depth=0), [b, b * 1]),
        ]
    )
    entries = attention_stats(maps)["layers"]
    got = [(e["name"], e["stack"], e["type"], e["block"], e["layer"], e["call"]) for e in entries]
    assert got == [
        ("decoder.cross_attn", None, "self", "blocks.4", 4, 0),
        ("encoder.self", "decoder", "cross", "blocks.7", 0, 0),
        ("encoder.self", "decoder", "cross", "blocks.7", 0, 1),  # every call of a layer that ran twice
    ]


def test_stats_of_swin_name_the_windows_layout_of_each_layer(swin):
    _, maps, _ = swin
    entries = attention_stats(maps)["layers"]
    assert [e["layout"] for e in entries] == ["windows"] * 4
    assert entries[0]["shape"] == [8, 1, 49, 49]  # 2 images x 4 windows
    np.testing.assert_allclose(entries[1]["entropy"], _row_entropy(maps[1].numpy()), rtol=1e-5)


# -- rollout ------------------------------------------------------------------------------------


def test_rollout_of_attention_maps_equals_rollout_of_its_tensors(vit):
    np.testing.assert_allclose(rollout(vit), rollout([m.numpy() for m in vit]))


def test_rollout_refuses_windows_channels_cross_and_mixed_stacks(swin, bart):
    _, windows, _ = swin
    with pytest.raises(
        LayoutError, match=r"layer 0 \('layers.0.blocks.0.attn'\) has layout windows.*maps.scatter"
    ):
        rollout(windows)
    _, channels, _ = captured_xcit()
    with pytest.raises(LayoutError, match=r"'blocks.0.attn'\) has layout channels.*not tokens"):
        rollout(channels)
    _, seq2seq, _, _ = bart
    with pytest.raises(ValueError, match="encoder_attn, .* are declared cross-attention"):
        rollout(seq2seq)
    a = softmax(1, 2, 4, 4)
    mixed = build([(info("a", 0, role="encoder"), a), (info("b", 1, role="decoder"), a)])
    with pytest.raises(ValueError, match="mix layers of the encoder and decoder stacks"):
        rollout(mixed)
    # Square cross-attention is still cross-attention: the declaration decides, not the shape.
    square_cross = build([(info("x", 0, kind="cross"), a)])
    with pytest.raises(ValueError, match="declared cross-attention"):
        rollout(square_cross)


def test_rollout_accepts_scattered_windows(swin):
    _, maps, _ = swin
    scattered = [maps.scatter(i) for i in (0, 1)]  # stage 0: (2, 1, 196, 196) each
    result = rollout(scattered)
    assert result.shape == (2, 196, 196)
    np.testing.assert_allclose(result.sum(-1), 1.0, rtol=1e-6)


# -- mean attention distance --------------------------------------------------------------------


def test_mean_distance_of_attention_maps_stacks_every_layer(vit):
    got = mean_attention_distance(vit, (4, 4), patch_size=8)
    expected = np.stack([mean_attention_distance(m, (4, 4), patch_size=8) for m in vit])
    assert got.shape == (3, 2, 2)
    np.testing.assert_allclose(got, expected)


def test_mean_distance_refuses_windows_but_takes_the_scattered_map(swin):
    _, maps, _ = swin
    with pytest.raises(LayoutError, match="windows.*maps.scatter"):
        mean_attention_distance(maps, None)
    layout = maps.layout(0)
    got = mean_attention_distance(maps.scatter(0), layout.size, cls_token=False)  # (batch, heads)
    # Independently, from the raw windows: token i of window (r, c) sits at (7r + i // 7, 7c + i % 7).
    raw = maps[0].numpy().reshape(2, 4, 1, 49, 49)  # (batch, windows, heads, query, key)
    i = np.arange(49)
    local = np.hypot(i[:, None] // 7 - i[None, :] // 7, i[:, None] % 7 - i[None, :] % 7)
    per_query = (raw * local).sum(-1)  # the same in every window: distances are within one window
    expected = per_query.mean(axis=(1, 3))  # over windows and queries: all windows have 49 queries
    np.testing.assert_allclose(got, expected, rtol=1e-5)


# -- one-map functions ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call", [lambda m: entropy(m), lambda m: top_k_pairs(m, 3)], ids=["entropy", "top_k_pairs"]
)
def test_one_map_functions_ask_for_one_layer_of_attention_maps(vit, call):
    with pytest.raises(TypeError, match=r"attn holds 3 layers; name one: .*layer=i.*maps\[i\]"):
        call(vit)


def test_a_declared_tokens_layout_is_what_plain_maps_are_taken_as():
    a = softmax(1, 2, 5, 5)
    maps = build([(info("x", 0, layout=TOKENS), a), (info("y", 1), a)])
    np.testing.assert_allclose(rollout(maps), rollout([a, a]))
    windows = build([(info("w", 0, layout=Windows(window=(1, 5), grid=(1, 1))), a)])
    with pytest.raises(LayoutError, match=r"windows \(1x5 tokens"):
        rollout(windows)
