"""entropy, top_k_pairs, mean_attention_distance and attention_stats on hand-computed cases."""

import json
import math

import numpy as np
import pytest
import torch

from visualizer.analysis import attention_stats, entropy, mean_attention_distance, top_k_pairs

# -- entropy ----------------------------------------------------------------------------------


def test_entropy_per_head_is_the_mean_row_entropy_in_nats():
    one_hot = np.eye(4)
    uniform = np.full((4, 4), 0.25)
    mixed = np.array([[0.5, 0.5, 0, 0], [1, 0, 0, 0], [0.25] * 4, [0, 0, 0, 1]])
    got = entropy(np.stack([one_hot, uniform, mixed]))
    np.testing.assert_allclose(got, [0.0, math.log(4), (math.log(2) + 0 + math.log(4) + 0) / 4])


def test_entropy_keeps_the_batch_axis_and_takes_torch_half_and_cross_attention():
    rng = np.random.default_rng(0)
    a = rng.random((2, 3, 4, 7))
    a /= a.sum(-1, keepdims=True)
    got = entropy(torch.from_numpy(a))
    assert got.shape == (2, 3)
    np.testing.assert_allclose(got[1, 2], np.mean([-(row * np.log(row)).sum() for row in a[1, 2]]))
    np.testing.assert_allclose(entropy(torch.from_numpy(a).half()), got, atol=1e-2)


@pytest.mark.parametrize(
    "bad, error, match",
    [
        (np.ones(3), ValueError, r"shape \(3,\): a tuple or list holds layers"),
        (np.ones((1, 1, 1, 3, 3, 3)), ValueError, r"\(layers, batch, heads, queries, keys\) for several"),
        (-np.ones((1, 3, 3)), ValueError, "softmax"),
        ("attn", TypeError, "AttentionMaps or plain maps"),
        (np.array([["a"]]), TypeError, "real numbers"),
    ],
)
def test_entropy_refuses_bad_input(bad, error, match):
    with pytest.raises(error, match=match):
        entropy(bad)


# -- top_k_pairs ------------------------------------------------------------------------------


def test_top_k_pairs_strongest_first_with_row_major_ties():
    a = np.array([[0.1, 0.7, 0.2], [0.4, 0.2, 0.4], [0.0, 0.3, 0.7]])
    assert top_k_pairs(a, 4) == [(0, 1, 0.7), (2, 2, 0.7), (1, 0, 0.4), (1, 2, 0.4)]
    pairs = top_k_pairs(a, 100)
    assert len(pairs) == 9 and pairs[-1] == (2, 0, 0.0)
    assert all(type(q) is int and type(k) is int and type(w) is float for q, k, w in pairs)


def test_top_k_pairs_averages_heads():
    heads = np.array([[[1.0, 0.0], [0.0, 1.0]], [[0.0, 1.0], [0.5, 0.5]]])
    assert top_k_pairs(torch.from_numpy(heads), 2) == [(1, 1, 0.75), (0, 0, 0.5)]


@pytest.mark.parametrize(
    "attn, k, error, match",
    [
        (np.eye(3), 0, ValueError, ">= 1"),
        (np.eye(3), 1.5, TypeError, "int"),
        (np.eye(3), True, TypeError, "int"),
        (np.ones((2, 2, 3, 3)), 1, ValueError, r"holds 2 batch items; pick one: item=b"),
        (np.ones(3), 1, ValueError, "queries, keys"),
    ],
)
def test_top_k_pairs_refuses_bad_input(attn, k, error, match):
    with pytest.raises(error, match=match):
        top_k_pairs(attn, k)


# -- mean_attention_distance ------------------------------------------------------------------


def with_cls(patch_rows, cls_weight=0.0):
    """(T, T) with a CLS row/column in front of the given patch-to-patch rows."""
    patch_rows = np.asarray(patch_rows, dtype=float)
    n = patch_rows.shape[0]
    out = np.zeros((n + 1, n + 1))
    out[0, 0] = 1.0
    out[1:, 0] = cls_weight
    out[1:, 1:] = patch_rows * (1 - cls_weight)
    return out


def test_distance_on_a_2x3_grid_by_hand():
    # Patches: index = row * 3 + col. Patch 2 is (0, 2) and patch 3 is (1, 0): sqrt(5) apart.
    rows = np.eye(6)
    rows[2] = np.eye(6)[3]
    rows[0] = [0, 0.5, 0, 0, 0.5, 0]  # from (0, 0): half to (0, 1) at 1, half to (1, 1) at sqrt(2)
    attn = with_cls(rows)[None]
    expected = (math.sqrt(5) + 0.5 * 1 + 0.5 * math.sqrt(2)) / 6
    np.testing.assert_allclose(mean_attention_distance(attn, (2, 3)), [expected])
    np.testing.assert_allclose(mean_attention_distance(attn, (2, 3), patch_size=14), [14 * expected])


def test_identity_attention_has_distance_zero_and_uniform_is_the_mean_pair_distance():
    uniform = np.full((4, 4), 0.25)
    attn = np.stack([with_cls(np.eye(4)), with_cls(uniform)])
    mean_pair = (0 + 1 + 1 + math.sqrt(2)) / 4
    np.testing.assert_allclose(mean_attention_distance(attn, 2), [0.0, mean_pair])
    # Grid inferred from T = 1 + 4; batch axis kept.
    np.testing.assert_allclose(mean_attention_distance(attn[None], None), [[0.0, mean_pair]])


def test_cls_weight_is_renormalised_away_unless_asked_not_to():
    rows = np.array([[0, 1.0], [1.0, 0]])  # a 1 x 2 grid, each patch looks at the other
    attn = with_cls(rows, cls_weight=0.75)[None]
    np.testing.assert_allclose(mean_attention_distance(attn, (1, 2)), [1.0])
    np.testing.assert_allclose(mean_attention_distance(attn, (1, 2), renormalize=False), [0.25])


def test_prefix_tokens_and_no_cls():
    patches = np.full((4, 4), 0.25)
    expected = (0 + 1 + 1 + math.sqrt(2)) / 4
    np.testing.assert_allclose(mean_attention_distance(patches[None], 2, cls_token=False), [expected])
    padded = np.zeros((7, 7))
    padded[:3, :3] = np.eye(3)
    padded[3:, 3:] = patches
    np.testing.assert_allclose(mean_attention_distance(padded[None], 2, cls_token=3), [expected])


@pytest.mark.parametrize(
    "attn, grid, kwargs, match",
    [
        (np.ones((1, 5, 5)) / 5, (3, 3), {}, r"3 x 3 has 9 patches"),
        (np.ones((1, 6, 6)) / 6, None, {}, "not a square number"),
        (np.ones((1, 5, 4)) / 4, 2, {}, "square"),
        (np.ones(5) / 5, 2, {}, r"shape \(5,\): a tuple or list holds layers"),
        (np.ones((1, 5, 5)) / 5, 2, {"cls_token": -1}, "prefix tokens"),
        (np.ones((1, 5, 5)) / 5, 2, {"patch_size": 0}, "positive"),
        (np.ones((1, 5, 5)) / 5, (0, 4), {}, r"grid must be \(rows, cols\), both at least 1"),
    ],
)
def test_distance_refuses_bad_input(attn, grid, kwargs, match):
    with pytest.raises(ValueError, match=match):
        mean_attention_distance(attn, grid, **kwargs)
    with pytest.raises(TypeError, match=r"grid must be \(rows, cols\), two ints, an int, or None"):
        mean_attention_distance(np.ones((1, 5, 5)) / 5, (2, "2"))


# -- attention_stats --------------------------------------------------------------------------


def test_stats_of_a_list_are_json_ready_and_match_numpy():
    rng = np.random.default_rng(0)
    maps = [rng.random((1, 2, 3, 3)).astype(np.float32), torch.from_numpy(rng.random((1, 2, 3, 3)))]
    stats = attention_stats(maps)
    assert json.loads(json.dumps(stats, allow_nan=False)) == stats
    first = stats["layers"][0]
    assert first["name"] == "layer 0" and first["layer"] == 0
    # Plain maps declare nothing but their place, and nothing is guessed.
    assert (first["stack"], first["type"], first["block"], first["layout"], first["call"]) == (
        None,
        None,
        "layer 0",
        "tokens",
        0,
    )
    assert first["shape"] == [1, 2, 3, 3]
    np.testing.assert_allclose(
        [first["mean"], first["std"], first["min"], first["max"]],
        [maps[0].mean(), maps[0].std(), maps[0].min(), maps[0].max()],
        rtol=1e-6,
    )
    assert stats["layers"][1]["layer"] == 1


def test_stats_of_a_dict_keep_its_names_guess_nothing_from_them_and_expand_cache_lists():
    square, wide = np.full((1, 1, 2, 2), 0.5), np.full((1, 1, 2, 4), 0.25)
    stats = attention_stats(
        {
            "model.decoder.layers.0.self_attn": square,
            "model.decoder.layers.0.encoder_attn": square,  # a name a guesser would call cross
            "something": wide,  # not square: still not called cross
            "Attention.forward": [square, square],
        }
    )
    got = [(e["name"], e["stack"], e["layer"], e["type"]) for e in stats["layers"]]
    assert got == [
        ("model.decoder.layers.0.self_attn", None, 0, None),
        ("model.decoder.layers.0.encoder_attn", None, 1, None),
        ("something", None, 2, None),
        ("Attention.forward[0]", None, 3, None),
        ("Attention.forward[1]", None, 4, None),
    ]
    np.testing.assert_allclose(stats["layers"][0]["entropy"], math.log(2))
    assert stats["layers"][0]["std"] == 0.0
    # What the stats of AttentionMaps report: tests/analysis/test_analysis_declared.py.


def test_stats_turn_non_finite_numbers_into_none_and_skip_entropy_for_negative_maps():
    stats = attention_stats([np.array([[np.inf, -1.0], [0.0, 1.0]])])
    entry = stats["layers"][0]
    assert entry["max"] is None and entry["mean"] is None and entry["entropy"] is None
    assert entry["min"] == -1.0
    json.dumps(stats, allow_nan=False)


@pytest.mark.parametrize(
    "maps, error, match",
    [
        (np.ones((2, 1, 1, 1, 1, 3)), ValueError, r"shape \(2, 1, 1, 1, 1, 3\)"),
        ("maps", TypeError, "AttentionMaps"),
        (5, TypeError, "AttentionMaps"),
        ([np.ones(3)], ValueError, "queries, keys"),
    ],
)
def test_stats_refuse_bad_input(maps, error, match):
    with pytest.raises(error, match=match):
        attention_stats(maps)
