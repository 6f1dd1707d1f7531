"""Analysis of a lazy capture reads rows, never whole rebuilt maps, and gives what the whole maps give.

The references are the same measures on the whole maps (``maps.stack()``, ``maps[i]``),
which the capture tests check against eager attention; here the blocks are made small
(``_blockwise.ROWS``) so that every measure spans several of them.
"""

import math

import numpy as np
import pytest
import torch
from analysis.declared_maps import captured_vit

from visualizer import _blockwise, capture_attention
from visualizer._lazy import Recipe
from visualizer._maps import AttentionMaps
from visualizer.analysis import attention_stats, entropy, mean_attention_distance, rollout, top_k_pairs

transformers = pytest.importorskip("transformers")
timm = pytest.importorskip("timm")

ROWS = 3  # query rows per block in these tests: 8 tokens are 3 blocks, 17 are 6


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch):
    monkeypatch.setattr(_blockwise, "ROWS", ROWS)


def _llama(calls=1, eager=False):
    """A tiny random Llama (sdpa, grouped-query heads), batch 2, item 1 left-padded by 3 tokens.

    ``eager``: also its eager attentions (output_attentions), as (maps, attentions).
    """
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=50,
        hidden_size=64,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=32,
    )
    model = transformers.LlamaModel(config).eval()
    ids = torch.randint(0, 50, (2, 8), generator=torch.Generator().manual_seed(1))
    mask = torch.ones(2, 8, dtype=torch.long)
    mask[1, :3] = 0
    with capture_attention(model) as maps, torch.no_grad():
        for _ in range(calls):
            model(input_ids=ids, attention_mask=mask)
    if not eager:
        return maps
    model.set_attn_implementation("eager")
    with torch.no_grad():
        attentions = model(input_ids=ids, attention_mask=mask, output_attentions=True).attentions
    return maps, [a.numpy() for a in attentions]


def _vit():
    """A tiny random timm ViT with fused attention: 2 images, CLS + 4 x 4 patches, 3 layers."""
    maps = captured_vit()
    return maps


@pytest.fixture(scope="module")
def llama():
    return _llama()


@pytest.fixture(scope="module")
def vit():
    return _vit()


def test_the_captures_are_lazy(llama, vit):
    assert all(info.rebuilt for info in llama.infos + vit.infos)
    assert llama.shape(0) == (2, 4, 8, 8) and vit.shape(0) == (2, 2, 17, 17)


def _entropy_written_out(a: np.ndarray) -> np.ndarray:
    """(batch, heads) mean over queries of -sum p log p, with 0 log 0 = 0, written in the test."""
    a = a.astype(np.float64)
    logs = np.log(a, out=np.zeros_like(a), where=a > 0)
    return -(a * logs).sum(-1).mean(-1)


@pytest.mark.parametrize("name", ["llama", "vit"])
def test_entropy_of_a_layer_read_by_rows_equals_that_of_the_whole_map(name, request):
    maps = request.getfixturevalue(name)
    whole = maps.stack().numpy()
    for i in range(len(maps)):
        got = entropy(maps, layer=i)
        assert got.shape == whole.shape[1:3]
        np.testing.assert_allclose(got, entropy(whole[i]), rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(got, _entropy_written_out(whole[i]), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(entropy(maps, layer=maps.names[-1]), entropy(whole[-1]), rtol=1e-6)


@pytest.mark.parametrize("name", ["llama", "vit"])
def test_top_k_pairs_read_by_rows_equal_those_of_the_whole_map(name, request):
    maps = request.getfixturevalue(name)
    whole = maps.stack().numpy()
    for i in range(len(maps)):
        for item in (0, 1):
            for k in (1, 5, 40, 10_000):  # 10_000: every pair
                expected = top_k_pairs(whole[i, item], k)
                got = top_k_pairs(maps, k, layer=i, item=item)
                assert [(q, key) for q, key, _ in got] == [(q, key) for q, key, _ in expected]
                np.testing.assert_allclose([w for *_, w in got], [w for *_, w in expected], rtol=1e-6)
            one_head = top_k_pairs(maps, 6, layer=i, item=item, head=-1)
            assert one_head == top_k_pairs(whole[i, item, -1], 6)


def test_top_k_pairs_keep_row_major_order_for_ties_across_blocks():
    # Padding rows of item 1 are all zero: the weakest pairs tie at 0 across blocks.
    maps = _llama()
    whole = maps.stack().numpy()
    got = top_k_pairs(maps, 64, layer=0, item=1, head=0)
    expected = top_k_pairs(whole[0, 1, 0], 64)
    # (rows read in other blocks round differently, by about 1e-8)
    assert [pair[:2] for pair in got] == [pair[:2] for pair in expected]
    np.testing.assert_allclose([pair[2] for pair in got], [pair[2] for pair in expected], atol=1e-7, rtol=0)
    assert [pair[:2] for pair in got[-24:]] == [pair[:2] for pair in top_k_pairs(whole[0, 1, 0], 64)[-24:]]


@pytest.mark.parametrize("renormalize", [True, False])
def test_mean_distance_read_by_rows_equals_that_of_the_whole_maps(vit, llama, renormalize):
    whole = vit.stack().numpy()
    expected = np.stack(
        [mean_attention_distance(m, (4, 4), patch_size=8, renormalize=renormalize) for m in whole]
    )
    got = mean_attention_distance(vit, (4, 4), patch_size=8, renormalize=renormalize)
    assert got.shape == (3, 2, 2)
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    np.testing.assert_allclose(
        mean_attention_distance(vit, None, layer=1), mean_attention_distance(whole[1], None)
    )
    # 4 prefix tokens then a 2 x 2 grid: the prefix rows end inside a block of 3 rows; item 1's
    # padding rows see nothing (zero rows), so they are left out of the mean.
    llama_whole = llama.stack().numpy()
    for i in range(2):
        np.testing.assert_allclose(
            mean_attention_distance(llama, (2, 2), cls_token=4, layer=i, renormalize=renormalize),
            mean_attention_distance(llama_whole[i], (2, 2), cls_token=4, renormalize=renormalize),
            rtol=1e-6,
        )


@pytest.mark.parametrize("name", ["llama", "vit"])
def test_stats_read_by_rows_equal_those_of_the_whole_maps(name, request):
    maps = request.getfixturevalue(name)
    got = attention_stats(maps)["layers"]
    expected = attention_stats([maps[i] for i in range(len(maps))])["layers"]
    assert [e["shape"] for e in got] == [e["shape"] for e in expected]
    for g, e in zip(got, expected):
        for field in ("mean", "std", "min", "max", "entropy"):
            assert math.isclose(g[field], e[field], rel_tol=1e-6, abs_tol=1e-9), (field, g, e)


def test_rollout_of_a_lazy_capture_equals_that_of_its_whole_maps(vit, llama):
    for maps in (vit, llama):
        whole = maps.stack().numpy()
        for fusion, discard in (("mean", 0.0), ("max", 0.5), ("min", 0.2)):
            np.testing.assert_allclose(
                rollout(maps, fusion, discard), rollout(list(whole), fusion, discard), rtol=1e-6, atol=1e-12
            )
        np.testing.assert_allclose(rollout(maps, start_layer=-1), rollout(list(whole), start_layer=-1))


def test_several_calls_of_a_layer_are_named_by_call():
    maps = _llama(calls=2)
    with pytest.raises(ValueError, match="ran 2 times during capture; say which call"):
        entropy(maps, layer=0)
    with pytest.raises(ValueError, match="ran 2 times during capture; say which call"):
        rollout(maps)
    np.testing.assert_allclose(entropy(maps, layer=1, call=-1), entropy(maps[1, -1]), rtol=1e-6)
    assert top_k_pairs(maps, 4, layer=1, item=0, call=0) == top_k_pairs(maps[1, 0][0], 4)
    stats = attention_stats(maps)["layers"]
    assert [(e["layer"], e["call"]) for e in stats] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert math.isclose(stats[3]["std"], attention_stats([maps[1, 1]])["layers"][0]["std"], rel_tol=1e-6)


def test_lazy_measures_agree_with_eager_attention():
    # Eager attention, independently of the rebuilt maps: item 0 has no padding; item 1's
    # first 3 rows see no key (zero when rebuilt, uniform in eager), so only its rows 3.. are compared.
    maps, eager = _llama(eager=True)
    for i, attn in enumerate(eager):
        got = entropy(maps, layer=i)
        np.testing.assert_allclose(got[0], _entropy_written_out(attn[0]), rtol=1e-5)
        rows = [-np.sum(p * np.log(p, out=np.zeros_like(p), where=p > 0), -1) for p in attn[1, :, 3:]]
        np.testing.assert_allclose(got[1] * 8 / 5, np.mean(rows, -1), rtol=1e-5)  # 5 of 8 rows count
        got_pairs = top_k_pairs(maps, 6, layer=i, item=0)
        assert [pair[:2] for pair in got_pairs] == [pair[:2] for pair in top_k_pairs(attn[0], 6)]
        np.testing.assert_allclose(
            mean_attention_distance(maps, (2, 2), cls_token=4, layer=i),
            mean_attention_distance(attn, (2, 2), cls_token=4),  # rows 4.. see keys in both items
            rtol=1e-5,
        )


# -- what is built --------------------------------------------------------------------------------


@pytest.fixture
def builds(monkeypatch):
    """Counts of whole maps built (Recipe.full, AttentionMaps.__getitem__) and the rows each read held."""
    counts = {"full": 0, "getitem": 0, "rows": []}
    full, getitem, rows = Recipe.full, AttentionMaps.__getitem__, Recipe.rows

    def counting_full(self, *args, **kwargs):
        counts["full"] += 1
        return full(self, *args, **kwargs)

    def counting_getitem(self, key):
        counts["getitem"] += 1
        return getitem(self, key)

    def counting_rows(self, *args, **kwargs):
        out = rows(self, *args, **kwargs)
        counts["rows"].append(out.shape[2])
        return out

    monkeypatch.setattr(Recipe, "full", counting_full)
    monkeypatch.setattr(AttentionMaps, "__getitem__", counting_getitem)
    monkeypatch.setattr(Recipe, "rows", counting_rows)
    return counts


@pytest.mark.parametrize(
    "measure",
    [
        lambda maps: entropy(maps, layer=1),
        lambda maps: top_k_pairs(maps, 5, layer=0, item=1),
        lambda maps: top_k_pairs(maps, 5, layer=0, item=1, head=2),
        lambda maps: mean_attention_distance(maps, (2, 2), cls_token=4),
        lambda maps: attention_stats(maps),
    ],
    ids=["entropy", "top_k_pairs", "top_k_pairs_head", "mean_attention_distance", "attention_stats"],
)
def test_row_measures_never_build_a_whole_rebuilt_map(builds, measure):
    maps = _llama()
    measure(maps)
    assert builds["full"] == 0 and builds["getitem"] == 0
    assert builds["rows"] and max(builds["rows"]) <= ROWS


@pytest.mark.parametrize("start", [0, 1, -1])
def test_rollout_builds_each_layer_it_uses_once(builds, start):
    maps = _vit()
    rollout(maps, start_layer=start)
    assert builds["full"] == len(maps) - (start % len(maps))


# -- bad input ------------------------------------------------------------------------------------


def test_a_layer_of_attention_maps_is_named_and_checked(llama):
    with pytest.raises(TypeError, match=r"entropy\(\): attn holds 2 layers; name one: entropy\(maps, layer="):
        entropy(llama)
    with pytest.raises(TypeError, match=r"top_k_pairs\(maps, k, layer=i, item=b\)"):
        top_k_pairs(llama, 3)
    with pytest.raises(ValueError, match=r"layer 0 holds 2 batch items; pick one: item=b \(0..1\)"):
        top_k_pairs(llama, 3, layer=0)
    with pytest.raises(IndexError, match=r"top_k_pairs\(\): item: batch item 2 is out of range"):
        top_k_pairs(llama, 3, layer=0, item=2)
    with pytest.raises(IndexError, match=r"top_k_pairs\(\): head: head 4 is out of range"):
        top_k_pairs(llama, 3, layer=0, item=0, head=4)
    with pytest.raises(IndexError, match="layer 2 is out of range: 2 layers were captured"):
        entropy(llama, layer=2)
    with pytest.raises(KeyError, match="'nope' was not captured"):
        mean_attention_distance(llama, (2, 2), cls_token=4, layer="nope")
    with pytest.raises(ValueError, match=r"grid 3 x 3 has 9 patches but the maps have 8 tokens"):
        mean_attention_distance(llama, (3, 3), cls_token=False, layer=0)


def test_layer_call_item_and_head_mean_the_same_on_one_plain_map():
    a = np.random.default_rng(0).dirichlet(np.ones(3), size=(2, 2, 3))  # (batch, heads, T, T), one layer
    np.testing.assert_array_equal(entropy(a, layer=0, call=0), entropy(a))
    np.testing.assert_array_equal(entropy(a, layer="layer 0"), entropy([a], layer=0))
    assert top_k_pairs(a, 2, item=1, head=0) == top_k_pairs(a[1, 0], 2)
    assert top_k_pairs(a[1], 2) == top_k_pairs(a, 2, layer=0, item=1)
    with pytest.raises(ValueError, match=r"layer 0 holds 2 batch items; pick one: item=b \(0..1\)"):
        top_k_pairs(a, 2)
    with pytest.raises(IndexError, match=r"layer 1 is out of range: the maps hold 1 \(0..0\)"):
        entropy(a, layer=1)
    with pytest.raises(IndexError, match="call 1 is out of range"):
        mean_attention_distance(np.full((2, 5, 5), 0.2), 2, call=1)
