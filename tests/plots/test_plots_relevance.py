"""plot_relevance on what explain() returns for tiny models: the scores drawn where they lie (on the
declared patch grid, along the text), diverging colours exactly when a score is negative, the
explained token outlined and out of the colour range, one clear error per bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from plot_checks import check_figure, colorbars, panels
from tiny_models import tiny_bert

from visualizer import explain
from visualizer.plots import plot_relevance
from visualizer.plots._relevance import DIVERGING_CMAP, QUERY_OUTLINE
from visualizer.relevance import METHODS

ROWS, COLS = 2, 3  # the ViT's patch grid: 32 x 48 px in patches of 16


@pytest.fixture(scope="module")
def vit():
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    return timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, img_size=(32, 48), depth=2, num_classes=5
    ).eval()


@pytest.fixture(scope="module")
def pixels():
    torch.manual_seed(1)
    return torch.randn(2, 3, 32, 48)


@pytest.fixture(scope="module")
def picture():
    """The 32 x 48 picture the ViT saw, as the figures take it: (H, W, 3) uint8."""
    return np.random.default_rng(0).integers(0, 255, (32, 48, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def bert():
    return tiny_bert()


@pytest.fixture(scope="module")
def ids():
    torch.manual_seed(2)
    return torch.randint(3, 100, (1, 40))


def along_mean(output):
    """A target of a model without a classifier: the mean hidden state along a fixed direction."""
    direction = torch.linspace(-1, 1, output.last_hidden_state.shape[-1])
    return (output.last_hidden_state.mean(1) * direction).sum(-1)


@pytest.fixture(scope="module")
def image_relevance(vit, pixels):
    return explain(vit, pixels, 3)  # attention_grad: scores >= 0


@pytest.fixture(scope="module")
def signed_relevance(vit, pixels):
    relevance = explain(vit, pixels, 3, method="input_x_gradient")
    assert (relevance.scores[:, 1:] < 0).any() and (relevance.scores[:, 1:] > 0).any()
    return relevance


@pytest.fixture(scope="module")
def text_relevance(bert, ids):
    return explain(bert, ids, along_mean)


def outlines(ax):
    colour = QUERY_OUTLINE["edgecolor"]
    return [
        p
        for p in ax.patches
        if isinstance(p, Rectangle)
        and not p.get_fill()
        and p.get_edgecolor()[:3] == tuple(int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5))
    ]


def colorbar_label(fig) -> str:
    (bar,) = colorbars(fig)
    return bar.get_ylabel() or bar.get_xlabel()


def test_image_scores_are_drawn_on_the_declared_grid_over_the_picture(image_relevance, picture):
    fig = plot_relevance(image_relevance, picture, item=1)
    check_figure(fig, 1, 1, images_per_panel=2)
    (ax,) = panels(fig)
    photo, overlay = ax.images
    assert photo.get_extent() == overlay.get_extent() == [0, 48, 32, 0]  # the patches span the picture
    expected = image_relevance.scores[1, 1:].reshape(ROWS, COLS).numpy()  # the CLS token left out
    np.testing.assert_allclose(overlay.get_array(), expected)
    np.testing.assert_array_equal(overlay.get_array(), image_relevance.patches(1))
    assert overlay.get_alpha() == 0.6 and overlay.get_cmap().name == "inferno"
    assert overlay.norm.vmin == 0 and overlay.norm.vmax == pytest.approx(expected.max())
    assert "sequential" in colorbar_label(fig)
    assert ax.get_title() == ("attention_grad relevance of target 3\nat position 0 (the class token), item 1")
    assert ax.get_xlabel() == "the class token is not drawn"
    assert not outlines(ax)  # the class token is not on the grid


def test_without_a_picture_the_grid_alone_is_drawn(image_relevance):
    fig = plot_relevance(image_relevance)
    (ax,) = panels(fig)
    (grid,) = ax.images
    assert grid.get_extent() == [0, COLS, ROWS, 0]
    np.testing.assert_allclose(grid.get_array(), image_relevance.patches(0))


def test_a_patch_explained_is_outlined_and_left_out_of_the_colour_range(vit, pixels):
    relevance = explain(vit, pixels[:1], 3, position=5)  # patch (1, 1)
    fig = plot_relevance(relevance, np.zeros((32, 48, 3)))
    (ax,) = panels(fig)
    (outline,) = outlines(ax)
    assert (outline.get_x(), outline.get_y(), outline.get_width(), outline.get_height()) == (16, 16, 16, 16)
    patches = relevance.patches(0)
    others = np.delete(patches.ravel(), 1 * COLS + 1)
    assert ax.images[1].norm.vmax == pytest.approx(others.max())
    assert patches[1, 1] > others.max()  # its own score holds the identity: drawn, clipped, with an arrow
    assert colorbars(fig)[0]._colorbar.extend == "max"


def test_negative_scores_get_a_diverging_scale_centred_at_zero(signed_relevance, picture):
    fig = plot_relevance(signed_relevance, picture)
    (ax,) = panels(fig)
    overlay = ax.images[1]
    patches = signed_relevance.patches(0)
    np.testing.assert_allclose(overlay.get_array(), patches)
    assert overlay.get_cmap().name == DIVERGING_CMAP
    largest = np.abs(patches).max()
    assert (overlay.norm.vmin, overlay.norm.vmax) == pytest.approx((-largest, largest))
    assert overlay.norm(0.0) == pytest.approx(0.5)
    assert "diverging" in colorbar_label(fig)
    # a signed square root: still centred, a small score further from the centre than on a linear scale
    sqrt = panels(plot_relevance(signed_relevance, scale="sqrt"))[0].images[0].norm
    assert sqrt(0.0) == pytest.approx(0.5) and sqrt(largest / 4) == pytest.approx(0.75)
    assert sqrt(-largest) == pytest.approx(0.0)
    limited = panels(plot_relevance(signed_relevance, vmax=1.0))[0].images[0].norm
    assert (limited.vmin, limited.vmax) == (-1.0, 1.0)


def test_text_scores_are_a_strip_of_the_tokens_in_rows_of_even_length(text_relevance, bert, ids):
    tokens = [f"w{i}" for i in range(40)]
    fig = plot_relevance(text_relevance, tokens=tokens)
    check_figure(fig, 1, 1)
    (ax,) = panels(fig)
    (strip,) = ax.images
    cells = strip.get_array()
    assert cells.shape == (3, 14)  # 40 tokens, at most 16 a row: 14 + 14 + 12
    assert cells.mask.sum() == 2 and cells.mask[-1, -2:].all()
    np.testing.assert_allclose(cells.compressed(), text_relevance.scores[0].numpy())
    written = [t.get_text() for t in ax.texts]
    assert written[0::2] == tokens
    assert written[1::2] == [f"{v:.2g}" for v in text_relevance.scores[0].tolist()]
    # [CLS], the position explained, is outlined; the others span the colour range
    (outline,) = outlines(ax)
    assert (outline.get_x(), outline.get_y()) == pytest.approx((-0.45, -0.45))
    others = text_relevance.scores[0, 1:]
    assert strip.norm.vmax == pytest.approx(float(others.max()))
    assert text_relevance.scores[0, 0] > strip.norm.vmax
    assert "[CLS] of a transformers encoder" in ax.get_title()
    assert "relevance of along_mean" in ax.get_title()


def test_a_long_text_is_clipped_to_the_window_of_the_position_with_a_note(bert, ids):
    relevance = explain(bert, ids, along_mean, position=35)
    fig = plot_relevance(relevance, max_tokens=10, wrap=5)
    (ax,) = panels(fig)
    cells = ax.images[0].get_array()
    assert cells.shape == (2, 5)
    np.testing.assert_allclose(cells.compressed(), relevance.scores[0, 26:36].numpy())
    assert [t.get_text() for t in ax.texts][0::2] == [str(i) for i in range(26, 36)]  # numbered labels
    assert ax.get_xlabel() == "tokens 26..35 of 40 shown"
    (outline,) = outlines(ax)
    assert (outline.get_x(), outline.get_y()) == pytest.approx((4 - 0.45, 1 - 0.45))  # the last cell
    first = panels(plot_relevance(explain(bert, ids, along_mean), max_tokens=10))[0]
    np.testing.assert_allclose(
        first.images[0].get_array().compressed(), explain(bert, ids, along_mean).scores[0, :10]
    )


@pytest.mark.parametrize("method", METHODS)
def test_every_method_is_drawn_as_it_scored(method, vit, pixels, bert, ids):
    for model, inputs, target in ((vit, pixels[:1], 3), (bert, ids[:, :12], along_mean)):
        relevance = explain(model, inputs, target, method=method, steps=4)
        fig = plot_relevance(relevance)
        (ax,) = panels(fig)
        drawn = ax.images[0].get_array()
        grid = relevance.layout.grid
        expected = relevance.patches(0) if grid else relevance.scores[0].numpy()
        np.testing.assert_allclose(np.ma.compressed(drawn), expected.ravel())
        negative = bool((expected < 0).any())
        assert (ax.images[0].get_cmap().name == DIVERGING_CMAP) is negative, (method, grid)
        assert ("diverging" in colorbar_label(fig)) is negative
        assert ax.get_title().startswith(f"{method} relevance of ")


def test_it_draws_into_a_given_axes(image_relevance):
    fig = Figure()
    ax = fig.add_subplot(1, 2, 2)
    assert plot_relevance(image_relevance, ax=ax, title="mine") is fig
    assert ax.get_title() == "mine" and len(ax.images) == 1


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda r, t: plot_relevance(r.scores), TypeError, r"takes what visualizer.explain\(\) returns"),
        (
            lambda r, t: plot_relevance(r, item=2),
            IndexError,
            r"item: batch item 2 is out of range; there are 2",
        ),
        (lambda r, t: plot_relevance(r, item=1.0), TypeError, r"item: a batch item index must be an int"),
        (
            lambda r, t: plot_relevance(r, np.zeros((48, 48, 3), np.uint8)),
            ValueError,
            r"the image is 48 x 48 px .* 2 x 3 patch grid .*not the picture the model saw",
        ),
        (lambda r, t: plot_relevance(r, np.zeros((1, 3, 3), np.uint8)), ValueError, "smaller than the 2 x 3"),
        (lambda r, t: plot_relevance(r, np.zeros((3, 32, 48))), ValueError, "looks channel-first"),
        (lambda r, t: plot_relevance(r, tokens=["a"] * 7), TypeError, "patch grid, which places them"),
        (lambda r, t: plot_relevance(t, tokens=["a", "b", "c"]), ValueError, "tokens has 3 labels but .* 40"),
        (lambda r, t: plot_relevance(t, tokens="a b c"), TypeError, "not one str"),
        (lambda r, t: plot_relevance(t, np.zeros((8, 8, 3))), ValueError, "no image to draw them on"),
        (lambda r, t: plot_relevance(t, wrap=0), ValueError, "wrap must be an int >= 1"),
        (lambda r, t: plot_relevance(r, scale="cube"), ValueError, "scale must be one of"),
        (lambda r, t: plot_relevance(r, alpha=2), ValueError, r"alpha must be a number in \[0, 1\]"),
        (lambda r, t: plot_relevance(r, vmax="1"), TypeError, "vmax must be a finite number"),
        (lambda r, t: plot_relevance(r, ax="left"), TypeError, "ax must be a matplotlib Axes"),
    ],
)
def test_bad_inputs_get_clear_errors(call, error, message, image_relevance, text_relevance):
    with pytest.raises(error, match=message):
        call(image_relevance, text_relevance)


def test_a_diverging_scale_refuses_log_and_limits_that_do_not_straddle_zero(signed_relevance):
    with pytest.raises(ValueError, match="scale='log' cannot show the negative scores"):
        plot_relevance(signed_relevance, scale="log")
    with pytest.raises(ValueError, match="give vmin < 0 < vmax, not vmin=0.1"):
        plot_relevance(signed_relevance, vmin=0.1, vmax=1.0)
