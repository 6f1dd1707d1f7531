"""plot_head, plot_heads, plot_head_grid, plot_layers, plot_token_heatmap: structure and orientation."""

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from plot_checks import check_figure, colorbars, panels, softmax_maps, titles

from visualizer.plots import plot_head, plot_head_grid, plot_heads, plot_layers, plot_token_heatmap


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def spike(queries=5, keys=5, at=(1, 3)):
    """A map that is 0 everywhere but 1 at (query, key) ``at``."""
    m = np.zeros((queries, keys))
    m[at] = 1.0
    return m


def test_plot_head_puts_queries_on_rows_from_the_top_in_image_axes():
    fig = plot_head(spike())
    check_figure(fig, 1, n_colorbars=1)
    ax = panels(fig)[0]
    image = ax.images[0]
    assert image.origin == "upper"
    assert np.unravel_index(np.argmax(image.get_array()), (5, 5)) == (1, 3)
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("key", "query")
    assert ax.get_title() == "attention"


def test_plot_head_cartesian_puts_the_origin_bottom_left_with_x_query_and_y_key():
    fig = plot_head(spike(4, 6, at=(1, 3)), axes="cartesian", tokens=list("abcd"), key_tokens=list("uvwxyz"))
    ax = panels(fig)[0]
    image = ax.images[0]
    assert image.origin == "lower"
    assert image.get_array().shape == (6, 4)  # rows are keys (y), columns queries (x)
    assert np.unravel_index(np.argmax(image.get_array()), (6, 4)) == (3, 1)
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("query", "key")
    assert [t.get_text() for t in ax.get_xticklabels()] == list("abcd")
    assert [t.get_text() for t in ax.get_yticklabels()] == list("uvwxyz")
    check_figure(fig, 1)


def test_plot_head_picks_batch_and_head_from_torch_and_averages_with_head_none(rng):
    a = softmax_maps(rng, 2, 3, 4, 4)
    fig = plot_head(torch.from_numpy(a).to(torch.bfloat16), head=2, batch=1)
    np.testing.assert_allclose(panels(fig)[0].images[0].get_array(), a[1, 2], atol=1e-2)
    assert titles(fig) == ["head 2"]
    fig = plot_head(a[0], head=None, title="mine", vmin=0, vmax=1, cmap="magma")
    image = panels(fig)[0].images[0]
    np.testing.assert_allclose(image.get_array(), a[0].mean(0))
    assert image.get_clim() == (0, 1) and image.get_cmap().name == "magma"
    assert titles(fig) == ["mine"]


def test_plot_head_draws_into_a_given_axes_without_a_new_figure(rng):
    fig = matplotlib.figure.Figure(layout="compressed")
    axes = fig.subplots(1, 2)
    assert plot_head(softmax_maps(rng, 2, 5, 5), ax=axes[1]) is fig
    assert len(axes[1].images) == 1 and len(axes[0].images) == 0
    check_figure(fig, 2, images_per_panel=0)


@pytest.mark.parametrize("scale", ["linear", "sqrt", "log"])
def test_color_scales(rng, scale):
    a = softmax_maps(rng, 3, 6, 6)
    a[0, 0, 0] = 0.0
    fig = plot_heads(a, scale=scale)
    norm = panels(fig)[0].images[0].norm
    assert type(norm).__name__ == {"linear": "Normalize", "sqrt": "PowerNorm", "log": "LogNorm"}[scale]
    assert norm.vmin > 0 if scale == "log" else norm.vmin == pytest.approx(0.0)


def test_a_sqrt_colorbar_spreads_its_ticks_evenly_so_labels_cannot_overlap(rng):
    fig = plot_head(softmax_maps(rng, 2, 40, 40), scale="sqrt")
    (bar,) = colorbars(fig)  # the colorbar's axes
    norm = panels(fig)[0].images[0].norm
    positions = norm(np.asarray(bar.get_yticks()))  # where each tick sits along the bar, 0..1
    gaps = np.diff(positions)
    assert len(positions) == 5 and gaps.min() > 0.2  # the default locator put several within 0.05


def test_plot_heads_draws_every_head_and_their_mean_on_one_scale(rng):
    a = softmax_maps(rng, 1, 6, 5, 5)
    fig = plot_heads(a)
    check_figure(fig, 7, n_colorbars=1)
    assert titles(fig) == [f"head {h}" for h in range(6)] + ["mean of 6"]
    np.testing.assert_allclose(panels(fig)[-1].images[0].get_array(), a[0].mean(0))
    assert len({ax.images[0].get_clim() for ax in panels(fig)}) == 1
    separate = plot_heads(a, shared_scale=False)
    assert len(colorbars(separate)) == 7


def test_one_head_one_layer_one_column_do_not_crash(rng):
    check_figure(plot_heads(softmax_maps(rng, 1, 4, 4)), 2)  # 1 head + mean, one row
    check_figure(plot_heads(softmax_maps(rng, 3, 4, 4), ncols=1), 4)  # one column
    check_figure(plot_head_grid(softmax_maps(rng, 1, 4, 4), list("abcd")), 1)
    check_figure(plot_layers([softmax_maps(rng, 2, 4, 4)]), 1)
    check_figure(plot_layers(softmax_maps(rng, 3, 1, 2, 4, 4), layers=[-1], ncols=1), 1)


def test_plot_head_grid_labels_outer_panels_with_tokens(rng):
    tokens = ["[CLS]", "the", "cat", "sat", "[SEP]"]
    fig = plot_head_grid(softmax_maps(rng, 2, 4, 5, 5), tokens, heads=[0, 2, 3], ncols=2)
    check_figure(fig, 3)
    top_left, top_right, bottom_left = panels(fig)
    assert [t.get_text() for t in top_left.get_yticklabels()] == tokens
    assert all(t.get_text() == "" for t in top_right.get_yticklabels())
    assert [t.get_text() for t in bottom_left.get_xticklabels()] == tokens
    assert titles(fig) == ["head 0", "head 2", "head 3"]


def test_plot_layers_takes_lists_stacks_and_head_choice(rng):
    maps = softmax_maps(rng, 4, 1, 3, 6, 6)
    fig = plot_layers(list(torch.from_numpy(maps)), head=1, layers=[0, 3])
    check_figure(fig, 2, n_colorbars=1)
    assert titles(fig) == ["layer 0", "layer 3"]
    np.testing.assert_allclose(panels(fig)[1].images[0].get_array(), maps[3, 0, 1])
    assert "head 1" in fig.get_suptitle()
    # A tuple or list holds layers: (heads, T, T) each, one item.
    third = panels(plot_layers(list(maps[:, 0])))[2]
    np.testing.assert_allclose(third.images[0].get_array(), maps[2, 0].mean(0))


def test_plot_token_heatmap_labels_both_axes_and_writes_small_maps_weights(rng):
    tokens = ["[CLS]", "a", "cat", "[SEP]"]
    fig = plot_token_heatmap(softmax_maps(rng, 1, 2, 4, 4), tokens)
    check_figure(fig, 1, n_colorbars=1)
    ax = panels(fig)[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == tokens
    assert [t.get_text() for t in ax.get_yticklabels()] == tokens
    assert len(ax.texts) == 16
    long = plot_token_heatmap(softmax_maps(rng, 20, 20), [f"t{i}" for i in range(20)])
    assert len(panels(long)[0].texts) == 0
    cross = plot_token_heatmap(
        softmax_maps(rng, 3, 5), list("abc"), key_tokens=list("vwxyz"), axes="cartesian"
    )
    assert [t.get_text() for t in panels(cross)[0].get_xticklabels()] == list("abc")


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda a: plot_head(a, head=7), IndexError, "valid: 0..2, or -3..-1"),
        (lambda a: plot_head(a, batch=0, axes="polar"), ValueError, "cartesian"),
        (lambda a: plot_head(a[0, 0, 0]), ValueError, "queries, keys"),
        (lambda a: plot_head(a, tokens=["x"]), ValueError, "1 labels but the map has 4"),
        (lambda a: plot_head(a, tokens="abcd"), TypeError, "list of strings"),
        (lambda a: plot_head(a, ax="left"), TypeError, "Axes"),
        (lambda a: plot_head(a, scale="cubic"), ValueError, "scale"),
        (lambda a: plot_heads(a, batch=2), IndexError, "batch item 2 is out of range"),
        (lambda a: plot_heads(a, ncols=0), ValueError, "ncols"),
        (lambda a: plot_head_grid(a, heads=[]), ValueError, "empty"),
        (lambda a: plot_layers(a[0, 0, 0]), ValueError, r"shape \(\d+,\): a tuple or list holds layers"),
        (lambda a: plot_layers([a], layers=[1]), IndexError, "valid: 0..0, or -1..-1"),
        (lambda a: plot_layers([a, a], layers=[1, -1]), ValueError, "layer 1 more than once"),
        (lambda a: plot_head_grid(a, heads=[True]), TypeError, "bool"),
        (lambda a: plot_head(a, vmin=0.5, vmax=0.1), ValueError, "vmin .* must be below vmax"),
        (lambda a: plot_token_heatmap(a, None), TypeError, "tokens is required"),
        (lambda a: plot_token_heatmap(a[..., :3], list("abcd")), ValueError, "key_tokens"),
    ],
)
def test_bad_input_is_refused_with_a_clear_message(rng, call, error, match):
    with pytest.raises(error, match=match):
        call(softmax_maps(rng, 1, 3, 4, 4))


def test_a_returned_figure_shows_itself_in_jupyter_without_pyplot(rng):
    formatters = pytest.importorskip("IPython.core.formatters")
    fig = plot_head(softmax_maps(rng, 2, 5, 5))
    data, _ = formatters.DisplayFormatter().format(fig)
    assert data["image/png"][:8] == b"\x89PNG\r\n\x1a\n"
    assert fig not in [plt.figure(n) for n in plt.get_fignums()]  # pyplot does not hold on to it


def test_unlabelled_small_maps_get_whole_token_positions_as_ticks(rng):
    fig = plot_head(softmax_maps(rng, 2, 9, 9), figsize=(3.0, 2.5))  # matplotlib alone picks 0, 2.5, 5, ...
    ax = panels(fig)[0]
    fig.canvas.draw()
    for ticks in (ax.get_xticks(), ax.get_yticks()):
        assert len(ticks) >= 3 and np.array_equal(ticks, np.round(ticks))


def dense_map(rng, tokens=257):
    """A ViT-like layer: most weights near 1/T, a few strong ones (the diagonal, a CLS column)."""
    logits = rng.normal(size=(2, tokens, tokens))
    logits[:, :, 0] += 3.0
    logits[:, np.arange(tokens), np.arange(tokens)] += 4.0
    e = np.exp(logits)
    return e / e.sum(-1, keepdims=True)


def label_boxes(fig, axis):
    """The drawn tick labels of ``axis``: those of ticks inside the axis' view."""
    renderer = fig.canvas.get_renderer()
    low, high = sorted(axis.get_view_interval())
    return [
        label.get_window_extent(renderer)
        for tick, label in zip(axis.get_majorticklocs(), axis.get_majorticklabels())
        if low <= tick <= high and label.get_text()
    ]


@pytest.mark.parametrize("plot", [plot_head, plot_heads])
def test_dense_maps_default_to_a_sqrt_scale_with_readable_ticks_and_a_zero(rng, plot):
    a = dense_map(rng)
    fig = plot(a)
    FigureCanvasAgg(fig).draw()
    norm = panels(fig)[0].images[0].norm
    shown = a[0] if plot is plot_head else np.concatenate([a, a.mean(0, keepdims=True)])
    assert type(norm).__name__ == "PowerNorm" and norm.gamma == 0.5
    assert norm.vmin == 0.0 and norm.vmax == pytest.approx(np.quantile(shown, 0.995))
    # The median weight: on a linear scale in the bottom 2% of the colours, here 5 times higher.
    linear = np.median(shown) / shown.max()
    assert linear < 0.02 and norm(np.median(shown)) > 5 * linear
    (bar,) = colorbars(fig)
    assert 0.0 in bar.get_yticks() and bar._colorbar.extend == "max"  # weights above the top: an arrow
    for ax in panels(fig):
        for axis in (ax.xaxis, ax.yaxis):
            boxes = label_boxes(fig, axis)
            assert 3 <= len(boxes) <= 7
            assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])


def test_short_maps_and_explicit_scales_keep_the_whole_linear_range(rng):
    small = softmax_maps(rng, 2, 12, 12)
    norm = panels(plot_head(small))[0].images[0].norm
    assert type(norm).__name__ == "Normalize" and (norm.vmin, norm.vmax) == (
        0.0,
        pytest.approx(small[0].max()),
    )
    a = dense_map(rng)
    fig = plot_head(a, scale="linear")
    norm = panels(fig)[0].images[0].norm
    assert type(norm).__name__ == "Normalize" and norm.vmax == pytest.approx(a[0].max())
    assert 0.0 in colorbars(fig)[0]._colorbar.get_ticks() and colorbars(fig)[0]._colorbar.extend == "neither"
    assert panels(plot_head(a, vmax=0.5))[0].images[0].norm.vmax == 0.5  # sqrt, but the top asked
