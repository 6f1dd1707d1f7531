"""plot_grid_to_grid, plot_cls_attention, plot_rollout: overlays aligned with the image, outlines in place."""

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from plot_checks import check_figure, colorbars, panels, softmax_maps, titles

from visualizer.analysis import rollout
from visualizer.plots import plot_cls_attention, plot_grid_to_grid, plot_rollout


@pytest.fixture
def image():
    """A 60 x 90 image (3 x 3 grid of 20 x 30 px patches), four colored quadrants."""
    img = np.zeros((60, 90, 3), dtype=np.uint8)
    img[:30, :45] = (255, 0, 0)
    img[:30, 45:] = (0, 255, 0)
    img[30:, 45:] = (0, 0, 255)
    return img


@pytest.fixture
def maps():
    """4 layers of (1, 2 heads, 1 CLS + 3 x 3 patches, same) maps."""
    return softmax_maps(np.random.default_rng(0), 4, 1, 2, 10, 10)


def red_outlines(ax):
    return [
        p
        for p in ax.patches
        if isinstance(p, Rectangle) and not p.get_fill() and tuple(p.get_edgecolor()[:3]) == (1.0, 0.0, 0.0)
    ]


def test_grid_to_grid_outlines_the_query_patch_and_draws_its_row_with_the_cls_cell(image, maps):
    fig = plot_grid_to_grid(image, maps[1], query=(1, 2))
    check_figure(fig, 2)
    left, right = panels(fig)
    # The prefix column is one patch wide (30 px) left of the image, so the image spans x 30..120.
    assert left.images[0].get_extent() == [30.0, 120.0, 60.0, 0.0]
    for ax in (left, right):
        (outline,) = red_outlines(ax)
        box = (outline.get_x(), outline.get_y(), outline.get_width(), outline.get_height())
        assert box == (90, 20, 30, 20)
    overlay = right.images[1]
    assert overlay.get_extent() == right.images[0].get_extent()  # aligned with the image
    row = maps[1, 0].mean(0)[1 + 1 * 3 + 2]
    np.testing.assert_allclose(overlay.get_array(), row[1:].reshape(3, 3))
    # The CLS weight is written in its cell; above the patches' scale, it gets its own colorbar.
    assert f"{row[0]:.2f}" in [t.get_text() for t in right.texts]
    assert len(colorbars(fig)) == 1 + bool(row[0] > row[1:].max())
    assert titles(fig) == ["query: patch (1, 2)", "attention of patch (1, 2), mean of heads"]


def test_grid_to_grid_query_forms_and_prefix_tokens(image, maps):
    fig = plot_grid_to_grid(image, maps[0], query=0, head=1)
    (outline,) = red_outlines(panels(fig)[1])
    assert (outline.get_x(), outline.get_y()) == (0, 0)  # the CLS cell
    np.testing.assert_allclose(panels(fig)[1].images[1].get_array(), maps[0, 0, 1, 0, 1:].reshape(3, 3))
    centre = plot_grid_to_grid(image, maps[0][0])  # no batch axis; None: centre patch
    (outline,) = red_outlines(panels(centre)[1])
    assert (outline.get_x(), outline.get_y()) == (30 + 30, 20)
    registers = softmax_maps(np.random.default_rng(1), 2, 12, 12)  # CLS + 2 registers + 3 x 3
    fig = plot_grid_to_grid(image, registers, query=2, prefix_tokens=3)
    (outline,) = red_outlines(panels(fig)[1])
    assert (outline.get_x(), outline.get_y()) == (0, 40)  # third prefix cell, top down
    check_figure(fig, 2)


def test_grid_to_grid_into_a_given_axes(image, maps):
    fig = Figure()
    ax = fig.add_subplot()
    assert plot_grid_to_grid(image, torch.from_numpy(maps[2]), query=(0, 0), ax=ax) is fig
    assert len(ax.images) == 2 and len(red_outlines(ax)) == 1


def test_cls_attention_draws_one_overlay_per_layer_plus_the_image(image, maps):
    fig = plot_cls_attention(image, maps)
    check_figure(fig, 5, n_colorbars=1)
    assert titles(fig)[0] == "image"
    overlays = panels(fig)[1:]
    for layer, ax in enumerate(overlays):
        assert ax.get_title().startswith(f"layer {layer}\n")
        cls_row = maps[layer, 0].mean(0)[0, 1:]
        np.testing.assert_allclose(ax.images[1].get_array(), (cls_row / cls_row.max()).reshape(3, 3))
        assert ax.images[1].get_extent() == ax.images[0].get_extent() == [0.0, 90.0, 60.0, 0.0]
        assert f"{cls_row.sum():.0%} on patches" in ax.get_title()
    assert "panel max" in colorbars(fig)[0].get_ylabel()


def test_cls_attention_fixed_scale_single_layer_and_one_column(image, maps):
    fig = plot_cls_attention(image, list(maps), layers=[-1], vmin=0, vmax=0.5, show_image=False, head=0)
    check_figure(fig, 1)
    overlay = panels(fig)[0].images[1]
    np.testing.assert_allclose(overlay.get_array(), maps[3, 0, 0, 0, 1:].reshape(3, 3))
    assert overlay.get_clim() == (0, 0.5)
    check_figure(plot_cls_attention(image, maps, ncols=1), 5)
    ax = Figure().add_subplot()
    plot_cls_attention(image, maps, layers=[2], ax=ax)
    assert len(ax.images) == 2


def test_rollout_overlay_matches_analysis_rollout(image, maps):
    fig = plot_rollout(image, maps, discard_ratio=0.5, head_fusion="max")
    check_figure(fig, 2, n_colorbars=1)
    expected = rollout(maps, head_fusion="max", discard_ratio=0.5)[0, 0, 1:].reshape(3, 3)
    np.testing.assert_allclose(panels(fig)[1].images[1].get_array(), expected)
    assert "max" in titles(fig)[1] and "0.5" in titles(fig)[1]
    # A precomputed (T, T) rollout, a chosen query, into an axes.
    ax = Figure().add_subplot()
    result = rollout(list(maps[:, 0]))
    plot_rollout(image, result, query=4, ax=ax, title="mine")
    np.testing.assert_allclose(ax.images[1].get_array(), result[4, 1:].reshape(3, 3))
    assert ax.get_title() == "mine"


def test_float_gray_and_rgba_images_are_accepted(maps):
    for img in (np.full((30, 30), 0.5), np.full((30, 30, 4), 200, np.uint8), torch.rand(30, 30, 3)):
        check_figure(plot_rollout(img, maps), 2)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda img, m: plot_grid_to_grid(img, m[0], query=(3, 0)), IndexError, "query row"),
        (lambda img, m: plot_grid_to_grid(img, m[0], query=10), IndexError, r"query \(1 prefix \+ 3 x 3"),
        (lambda img, m: plot_grid_to_grid(img, m[0], query="cls"), TypeError, "query"),
        (lambda img, m: plot_grid_to_grid(img, m[0], grid=(2, 2)), ValueError, "2 x 2 has 4 patches"),
        (lambda img, m: plot_grid_to_grid(img, m[0], prefix_tokens=2), ValueError, "not a square number"),
        (lambda img, m: plot_grid_to_grid(img, m[0][..., :5]), ValueError, "square"),
        (lambda img, m: plot_grid_to_grid(img, m[0], alpha=2), ValueError, "alpha"),
        (lambda img, m: plot_cls_attention(img, m, ax=Figure().add_subplot()), ValueError, "one layer"),
        (lambda img, m: plot_rollout(img.astype(float), m), ValueError, r"\[0, 1\]"),
        (lambda img, m: plot_rollout(img.transpose(2, 0, 1).copy(), m), ValueError, "channel-first"),
        (lambda img, m: plot_rollout(img[..., :2], m), ValueError, "height, width, 3"),
        (lambda img, m: plot_rollout(img, m, discard_ratio=1), ValueError, "discard_ratio"),
    ],
)
def test_bad_input_is_refused_with_a_clear_message(image, maps, call, error, match):
    with pytest.raises(error, match=match):
        call(image, maps)


def test_a_plain_maps_grid_is_inferred_from_the_images_aspect(image):
    # 1 CLS + 12 patches: no square, so the 3 x 4 grid of a 60 x 80 picture (4:3), as the image view does.
    wide = softmax_maps(np.random.default_rng(5), 2, 1, 2, 13, 13)
    fig = plot_cls_attention(image[:, :80], list(wide), show_image=False)
    assert [ax.images[1].get_array().shape for ax in panels(fig)] == [(3, 4), (3, 4)]  # over the picture
    np.testing.assert_allclose(
        plot_grid_to_grid(image[:, :80], wide[1], query=0, prefix_tokens=1).axes[1].images[1].get_array(),
        wide[1, 0].mean(0)[0, 1:].reshape(3, 4),
    )
    with pytest.raises(
        ValueError, match=r"cannot infer the patch grid.*nor a grid of the image's aspect ratio"
    ):
        plot_cls_attention(image[:, :40], list(wide))  # 2:3: the nearest grid of 12 is 4 x 3 (3:4)
