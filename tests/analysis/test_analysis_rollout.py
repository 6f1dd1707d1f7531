"""rollout() against a naive reference written with explicit loops, plus its input contract."""

import math

import numpy as np
import pytest
import torch

from visualizer.analysis import rollout


def random_maps(rng, layers=3, batch=2, heads=3, tokens=5):
    """Row-stochastic (layers, batch, heads, T, T) maps with distinct values (no ties)."""
    a = rng.random((layers, batch, heads, tokens, tokens)) + 0.05
    return a / a.sum(-1, keepdims=True)


def naive_rollout(maps, head_fusion="mean", discard_ratio=0.0, start_layer=0):
    """One item's rollout from (layers, heads, T, T) nested lists, loop by loop, as documented."""
    layers, heads, tokens = len(maps), len(maps[0]), len(maps[0][0])
    result = [[1.0 if i == j else 0.0 for j in range(tokens)] for i in range(tokens)]
    for layer in range(start_layer, layers):
        fused = [[0.0] * tokens for _ in range(tokens)]
        for q in range(tokens):
            for k in range(tokens):
                values = [maps[layer][h][q][k] for h in range(heads)]
                if head_fusion == "mean":
                    fused[q][k] = sum(values) / heads
                elif head_fusion == "max":
                    fused[q][k] = max(values)
                else:
                    fused[q][k] = min(values)
        if discard_ratio > 0:
            for q in range(tokens):
                candidates = [k for k in range(tokens) if k != q and k != 0]
                candidates.sort(key=lambda k: (fused[q][k], k))
                for k in candidates[: math.floor(discard_ratio * len(candidates) + 1e-9)]:
                    fused[q][k] = 0.0
        mixed = [[0.0] * tokens for _ in range(tokens)]
        for q in range(tokens):
            total = sum(fused[q])
            for k in range(tokens):
                mixed[q][k] = 0.5 * fused[q][k] / total + (0.5 if q == k else 0.0)
            total = sum(mixed[q])
            mixed[q] = [v / total for v in mixed[q]]
        product = [[0.0] * tokens for _ in range(tokens)]
        for i in range(tokens):
            for j in range(tokens):
                product[i][j] = sum(mixed[i][m] * result[m][j] for m in range(tokens))
        result = product
    return np.array(result)


@pytest.mark.parametrize("head_fusion", ["mean", "max", "min"])
@pytest.mark.parametrize("discard_ratio", [0.0, 0.34, 0.5, 0.9])
@pytest.mark.parametrize("start_layer", [0, 1])
def test_rollout_matches_the_naive_reference(head_fusion, discard_ratio, start_layer):
    maps = random_maps(np.random.default_rng(7), tokens=6)
    got = rollout(maps, head_fusion=head_fusion, discard_ratio=discard_ratio, start_layer=start_layer)
    assert got.shape == (2, 6, 6)
    for item in range(2):
        expected = naive_rollout(maps[:, item].tolist(), head_fusion, discard_ratio, start_layer)
        np.testing.assert_allclose(got[item], expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got.sum(-1), 1.0, rtol=1e-12)


def test_mean_fusion_without_discard_is_the_paper_formula_with_later_layers_on_the_left():
    maps = random_maps(np.random.default_rng(1), layers=2, batch=1)[:, 0]
    eye = np.eye(5)
    a1, a2 = (0.5 * m.mean(0) + 0.5 * eye for m in maps)
    np.testing.assert_allclose(rollout(list(maps)), a2 @ a1, rtol=1e-12)
    assert not np.allclose(a2 @ a1, a1 @ a2)


def test_discard_zeroes_weakest_links_but_never_self_or_the_first_key():
    tokens = 6
    fused = np.full((1, 1, tokens, tokens), 1e-6)
    fused[..., 0] = 1e-9  # key 0 is the weakest everywhere, yet must stay
    fused = fused / fused.sum(-1, keepdims=True)
    one_layer = rollout([fused[0]], discard_ratio=0.99)
    # floor(0.99 * n) of the n other keys go, all but one; equal weights drop the lower keys first.
    expected = [{0, 5}, {0, 1, 5}, {0, 2, 5}, {0, 3, 5}, {0, 4, 5}, {0, 4, 5}]
    assert [set(np.flatnonzero(row > 0)) for row in one_layer] == expected
    np.testing.assert_allclose(one_layer.sum(-1), 1.0)


def test_accepts_lists_of_numpy_torch_and_half_precision_alike():
    maps = random_maps(np.random.default_rng(3))
    expected = rollout(maps)
    np.testing.assert_allclose(rollout(list(maps)), expected)
    np.testing.assert_allclose(rollout([torch.from_numpy(m) for m in maps]), expected)
    np.testing.assert_allclose(rollout(torch.from_numpy(maps)), expected)
    half = rollout([torch.from_numpy(m).to(torch.bfloat16) for m in maps])
    assert half.dtype == np.float64
    np.testing.assert_allclose(half, expected, atol=2e-2)
    # Without a batch axis: (heads, T, T) per layer -> (T, T).
    np.testing.assert_allclose(rollout(list(maps[:, 1])), expected[1])
    np.testing.assert_allclose(rollout(tuple(torch.from_numpy(maps[:, 1]))), expected[1])
    # One 4-axis array is one layer, (batch, heads, T, T); 3 axes one layer of one item.
    np.testing.assert_allclose(rollout(maps[0]), rollout([maps[0]]))
    np.testing.assert_allclose(rollout(maps[0, 1]), rollout([maps[0]])[1])


def test_negative_start_layer_counts_from_the_end():
    maps = random_maps(np.random.default_rng(4), layers=4)
    np.testing.assert_allclose(rollout(maps, start_layer=-1), rollout(maps[3:]))


@pytest.mark.parametrize(
    "attentions, kwargs, error, match",
    [
        (np.ones((1, 2, 1, 2, 3, 3)) / 3, {}, ValueError, r"\(layers, batch, heads, queries, keys\) for"),
        ([np.ones(3) / 3], {}, ValueError, r"layer 0 has shape \(3,\): a tuple or list holds layers"),
        ([np.ones((1, 1, 1, 3, 3))], {}, ValueError, r"shape \(1, 1, 1, 3, 3\)"),
        ([], {}, ValueError, "empty"),
        ([np.ones((1, 3, 3)), "x"], {}, TypeError, "not str"),
        ("maps", {}, TypeError, "AttentionMaps or plain maps"),
        ([np.ones((1, 2, 3)) / 3], {}, ValueError, "square"),
        ([np.ones((1, 3, 3)), np.ones((2, 1, 3, 3))], {}, ValueError, "agree"),
        ([np.ones((1, 3, 3)), np.ones((1, 4, 4))], {}, ValueError, "agree"),
        ([-np.ones((1, 3, 3))], {}, ValueError, "softmax"),
        ([np.ones((1, 3, 3))], {"head_fusion": "median"}, ValueError, "head_fusion"),
        ([np.ones((1, 3, 3))], {"discard_ratio": 1.0}, ValueError, r"\[0, 1\)"),
        ([np.ones((1, 3, 3))], {"discard_ratio": -0.1}, ValueError, r"\[0, 1\)"),
        ([np.ones((1, 3, 3))], {"discard_ratio": "0.5"}, TypeError, "discard_ratio"),
        (
            [np.ones((1, 3, 3))],
            {"start_layer": 1},
            IndexError,
            r"layer 1 is out of range.*valid: 0..0, or -1..-1",
        ),
        ([np.ones((1, 3, 3))], {"start_layer": 0.5}, TypeError, "start_layer"),
    ],
)
def test_bad_input_is_refused_with_a_clear_message(attentions, kwargs, error, match):
    with pytest.raises(error, match=match):
        rollout(attentions, **kwargs)
