"""``maps.read``: parts of a layer's map, cut before they are rebuilt, against slices of the whole map;
and the cache of whole rebuilt maps, bounded by bytes."""

from __future__ import annotations

import pytest
import torch

from visualizer import capture_attention
from visualizer._lazy import Recipe
from visualizer._maps import CACHE_BYTES

# Selectors in every form read takes, each with what it means as a list of positions of a size-n axis.
SELECTORS = [
    (None, lambda n: list(range(n))),
    (1, lambda n: [1]),
    (-1, lambda n: [n - 1]),
    (slice(1, None, 2), lambda n: list(range(1, n, 2))),
    ([2, 0], lambda n: [2, 0]),
    (torch.tensor([0, 2]), lambda n: [0, 2]),
]


def cut(full: torch.Tensor, batch, heads, rows) -> torch.Tensor:
    """The reference: index the whole (batch, heads, queries, keys) map, axis by axis."""
    for axis, (selector, positions) in enumerate([batch, heads, rows]):
        if selector is not None:
            full = full.index_select(axis, torch.tensor(positions(full.shape[axis])))
    return full


def llama_capture():
    """A lazy capture of a tiny Llama (sdpa, causal, grouped-query keys) on a padded batch of 3."""
    from tiny_models import tiny_llama

    model = tiny_llama()
    ids = torch.randint(0, 100, (3, 12), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, :3] = 0  # left padding in item 1
    with torch.no_grad(), capture_attention(model) as maps:
        model(ids, attention_mask=mask)
    assert maps.recipe(0) is not None
    return maps


@pytest.fixture(scope="module")
def llama_maps():
    return llama_capture()


@pytest.mark.parametrize("batch", SELECTORS, ids=lambda s: f"batch={s[0]!r}")
@pytest.mark.parametrize("heads", SELECTORS[::2], ids=lambda s: f"heads={s[0]!r}")
@pytest.mark.parametrize("rows", SELECTORS[::3], ids=lambda s: f"rows={s[0]!r}")
def test_read_equals_a_cut_of_the_whole_rebuilt_map(llama_maps, batch, heads, rows):
    llama_maps.cache_bytes = 0  # every whole map below is rebuilt, never read from the cache
    full = llama_maps.recipe(1).full()
    got = llama_maps.read(1, batch=batch[0], heads=heads[0], rows=rows[0])
    assert got.dim() == 4
    torch.testing.assert_close(got, cut(full, batch, heads, rows), rtol=0, atol=1e-6)


def test_read_cuts_items_heads_and_rows_before_it_rebuilds(llama_maps, monkeypatch):
    """Rebuilding sees one item's queries and keys and the rows asked for, never the whole map."""
    seen = []
    original = Recipe.rows

    def spy(self, queries=slice(None), heads=None):
        seen.append((self.shape, queries, heads))
        return original(self, queries, heads)

    monkeypatch.setattr(Recipe, "rows", spy)
    monkeypatch.setattr(Recipe, "full", lambda self, heads=None: pytest.fail("the whole map was rebuilt"))
    llama_maps.cache_bytes = 0
    part = llama_maps.read(0, batch=2, heads=[1, 3], rows=slice(2, 5))
    assert part.shape == (1, 2, 3, 12)
    assert seen == [((1, 4, 12, 12), slice(2, 5), [1, 3])]  # one item of three


def test_read_of_an_eager_layer_and_its_errors():
    """An eagerly captured layer (lazy=False: the map itself is kept) is cut the same way."""
    mha = torch.nn.MultiheadAttention(8, 2, batch_first=True).eval()
    x = torch.randn(3, 5, 8)
    with torch.no_grad(), capture_attention(mha, lazy=False) as maps:
        _, expected = mha(x, x, x, average_attn_weights=False)
    assert maps.recipe(0) is None
    assert maps.read(0) is maps[0]  # nothing cut: the kept map itself
    for batch in SELECTORS:
        for rows in SELECTORS[::2]:
            got = maps.read(0, batch=batch[0], rows=rows[0], heads=[1])
            torch.testing.assert_close(got, cut(expected, batch, (1, lambda n: [1]), rows))
    with pytest.raises(IndexError, match="batch item 3 is out of range: there are 3"):
        maps.read(0, batch=3)
    with pytest.raises(IndexError, match="head -3 is out of range"):
        maps.read(0, heads=-3)
    with pytest.raises(TypeError, match="a query row is an int, a slice"):
        maps.read(0, rows=1.5)
    with pytest.raises(TypeError, match="batch items must be ints"):
        maps.read(0, batch=[0, "1"])


def test_read_of_a_windowed_layer_follows_its_layout():
    """Swin's windowed attention: the first axis is batch x windows; batch= picks items, each with all
    of its windows, in the order the layout declares."""
    timm = pytest.importorskip("timm")
    model = timm.create_model(
        "swin_tiny_patch4_window7_224",
        pretrained=False,
        img_size=56,
        embed_dim=16,
        depths=(1, 1),
        num_heads=(1, 2),
    ).eval()
    with torch.no_grad(), capture_attention(model) as maps:
        model(torch.randn(3, 3, 56, 56))
    windows = maps.layout(0).windows
    assert windows > 1
    full = maps[0]
    assert full.shape[0] == 3 * windows
    torch.testing.assert_close(maps.read(0, batch=1), full[windows : 2 * windows])
    torch.testing.assert_close(
        maps.read(0, batch=[2, 0], rows=[0]),
        full[[*range(2 * windows, 3 * windows), *range(windows)]][:, :, [0]],
    )
    with pytest.raises(IndexError, match="batch item 3 is out of range: there are 3"):
        maps.read(0, batch=3)


def test_read_of_a_generation_step():
    """A generate() run's steps are calls of each layer; read(call=i) cuts one step like any map."""
    from tiny_models import tiny_llama

    model = tiny_llama()
    ids = torch.randint(0, 100, (2, 6), generator=torch.Generator().manual_seed(1))
    with torch.no_grad(), capture_attention(model) as maps:
        model.generate(
            ids, attention_mask=torch.ones_like(ids), max_new_tokens=3, do_sample=False, pad_token_id=0
        )
    steps = maps.calls(0)
    assert len(steps) == 3 and steps[-1].shape[2] == 1
    for call in range(3):
        full = maps[0, call]
        torch.testing.assert_close(maps.read(0, call=call, batch=1, heads=[0, 2]), full[1:2][:, [0, 2]])
    with pytest.raises(ValueError, match="say which call you mean"):
        maps.read(0)


def test_whole_maps_are_cached_within_the_byte_bound(monkeypatch):
    builds = []
    original = Recipe.full

    def counting(self, heads=None):
        builds.append(self)
        return original(self, heads)

    monkeypatch.setattr(Recipe, "full", counting)
    maps = llama_capture()
    assert maps.cache_bytes == CACHE_BYTES == 256 * 2**20
    whole = maps.read(0)  # read() rebuilds for its caller and keeps nothing
    assert maps.read(0) is not whole and len(builds) == 2
    first = maps[0]
    assert maps[0] is first and maps.read(0) is first and len(builds) == 3  # maps[i] keeps it: built once
    torch.testing.assert_close(first, whole, rtol=0, atol=0)
    torch.testing.assert_close(maps.read(0, batch=0, rows=[3]), first[:1, :, [3]])  # a cut of the cached map
    assert len(builds) == 3
    one = first.numel() * first.element_size()
    maps.cache_bytes = one  # room for one layer: reading another evicts the first
    second = maps[1]
    assert maps[1] is second and maps[0] is not first and len(builds) == 5
    maps.cache_bytes = one - 1  # a map larger than the bound is never kept
    assert maps[0] is not maps[0]
    maps.cache_bytes = 0
    assert maps[1] is not maps[1]
    maps.cache_bytes = CACHE_BYTES
    kept = maps[1]
    maps.clear()  # forgetting the calls forgets their maps too
    assert maps.kept_bytes() == 0 and kept.shape == (3, 4, 12, 12)


@pytest.mark.parametrize(
    "value, error, message",
    [
        (-1, ValueError, "not -1"),
        (1.5, TypeError, "not 1.5"),
        (True, TypeError, "not True"),
    ],
)
def test_cache_bytes_rejects_what_is_not_a_size(llama_maps, value, error, message):
    with pytest.raises(error, match=f"AttentionMaps.cache_bytes must be an int >= 0, {message}"):
        llama_maps.cache_bytes = value
