"""Plots of a lazy capture draw what they draw from the whole maps, reading rows or one layer at a time."""

import numpy as np
import pytest
from analysis.declared_maps import captured_vit
from plot_checks import panels

from visualizer._lazy import Recipe
from visualizer.plots import plot_attention_distance, plot_cls_attention, plot_layers, plot_rollout


@pytest.fixture
def vit():
    """A tiny random timm ViT with fused attention (CLS + 4 x 4 patches), 3 layers, 2 images."""
    pytest.importorskip("timm")
    maps = captured_vit()
    assert all(info.rebuilt for info in maps.infos)
    return maps


@pytest.fixture
def picture():
    return np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)


@pytest.fixture
def full_builds(monkeypatch):
    count = [0]
    full = Recipe.full

    def counting(self, *args, **kwargs):
        count[0] += 1
        return full(self, *args, **kwargs)

    monkeypatch.setattr(Recipe, "full", counting)
    return count


def _drawn(fig):
    """Every image array and dot position of every panel, in order."""
    out = []
    for ax in panels(fig):
        out += [np.asarray(image.get_array(), dtype=float) for image in ax.get_images()]
        out += [np.asarray(dots.get_offsets(), dtype=float) for dots in ax.collections]
    return out


def _same_drawing(lazy, whole):
    a, b = _drawn(lazy), _drawn(whole)
    assert len(a) == len(b) > 0
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize(
    "plot",
    [
        lambda maps, img: plot_cls_attention(img, maps, batch=1, head=1),
        lambda maps, img: plot_cls_attention(img, maps, query=(1, 2), layers=[0, 2]),
        lambda maps, img: plot_attention_distance(maps, batch=None, patch_size=8),
        lambda maps, img: plot_attention_distance(maps, batch=1, layers=[2, 0]),
    ],
    ids=["cls", "cls_query", "distance_batch_mean", "distance_one_item"],
)
def test_row_plots_of_a_lazy_capture_build_no_map_and_draw_what_the_whole_maps_draw(
    vit, picture, full_builds, plot
):
    lazy = plot(vit, picture)
    assert full_builds[0] == 0
    whole = plot([m.clone() for m in vit.stack()], picture)
    _same_drawing(lazy, whole)


def test_rollout_and_layer_plots_build_each_layer_once(vit, picture, full_builds):
    vit.cache_bytes = 0  # every read rebuilds: the counts are each plot's own
    lazy = plot_rollout(picture, vit, discard_ratio=0.5)
    assert full_builds[0] == 3
    _same_drawing(lazy, plot_rollout(picture, list(vit.stack()), discard_ratio=0.5))
    full_builds[0] = 0
    lazy = plot_layers(vit, layers=[0, 2], batch=1)
    assert full_builds[0] == 2  # layer 1 is not selected: never built
    _same_drawing(lazy, plot_layers(list(vit.stack()), layers=[0, 2], batch=1))


def test_plots_read_the_maps_the_capture_keeps_and_keep_none_themselves(vit, picture, full_builds):
    """A map read with maps[i] is kept (within maps.cache_bytes) and serves the plots after it; a plot
    that walks the layers (rollout) keeps nothing; plot_layers rebuilds only the item it draws."""
    plot_rollout(picture, vit)
    assert full_builds[0] == 3
    first = vit[0]
    assert full_builds[0] == 4 and vit[0] is first
    plot_layers(
        vit, layers=[0, 2], batch=1
    )  # layer 0 cut from the kept map, layer 2 rebuilt for item 1 alone
    assert full_builds[0] == 5
    plot_rollout(picture, vit)
    assert full_builds[0] == 7  # layers 1 and 2 again, layer 0 from the cache
