"""What a researcher judges in a figure: one colour map, titles that say what is shown, the CLS cell."""

import matplotlib
import numpy as np
import pytest
from plot_checks import colorbars, panels, softmax_maps

from visualizer.plots import (
    plot_attention_flow,
    plot_cls_attention,
    plot_grid_to_grid,
    plot_head,
    plot_head_grid,
    plot_heads,
    plot_layers,
    plot_rollout,
    plot_token_heatmap,
)
from visualizer.plots._colors import ATTENTION_CMAP, colormap_table


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def vit(rng):
    """Three layers of a ViT-like map: 2 heads, CLS + a 3x4 grid; and a 30x40 picture."""
    maps = [softmax_maps(rng, 1, 2, 13, 13) for _ in range(3)]
    return maps, np.full((30, 40, 3), 0.5)


def heatmaps(fig):
    """The colour-mapped images of a figure (not the RGB pictures under overlays)."""
    return [image for ax in panels(fig) for image in ax.images if image.get_array().ndim == 2]


def every_plot(vit, **options):
    maps, picture = vit
    tokens = [f"t{i}" for i in range(13)]
    flow = {"layers": [{"self_attention": m} for m in maps]}
    geometry = {"grid": (3, 4)}
    return {
        "plot_head": plot_head(maps[0], **options),
        "plot_heads": plot_heads(maps[0], **options),
        "plot_head_grid": plot_head_grid(maps[0], tokens, **options),
        "plot_layers": plot_layers(maps, **options),
        "plot_token_heatmap": plot_token_heatmap(maps[0], tokens, **options),
        "plot_attention_flow": plot_attention_flow(flow, **options),
        "plot_grid_to_grid": plot_grid_to_grid(picture, maps[0], **geometry, **options),
        "plot_cls_attention": plot_cls_attention(picture, maps, **geometry, **options),
        "plot_rollout": plot_rollout(picture, maps, **geometry, **options),
    }


def test_every_attention_plot_uses_one_colour_map_and_cmap_changes_it(vit):
    assert ATTENTION_CMAP in matplotlib.colormaps
    for name, fig in every_plot(vit).items():
        assert {image.get_cmap().name for image in heatmaps(fig)} == {ATTENTION_CMAP}, name
    for name, fig in every_plot(vit, cmap="viridis").items():
        assert {image.get_cmap().name for image in heatmaps(fig)} == {"viridis"}, name


def test_the_view_colour_table_is_sampled_from_matplotlib():
    table = colormap_table("viridis", steps=5)
    expected = matplotlib.colormaps["viridis"](np.linspace(0, 1, 5))[:, :3] * 255
    np.testing.assert_allclose(table, expected, atol=0.5)
    assert colormap_table()[-1] == [round(255 * c) for c in matplotlib.colormaps[ATTENTION_CMAP](1.0)[:3]]
    with pytest.raises(ValueError, match="cmap 'nope' is not a matplotlib colour map"):
        colormap_table("nope")
    with pytest.raises(TypeError, match="cmap must be a colour map name or a matplotlib Colormap"):
        colormap_table(3)


@pytest.fixture
def declared(vit):
    """The same three layers as an AttentionMaps of a model called "TinyViT"."""
    from analysis.declared_maps import build, info

    torch = pytest.importorskip("torch")
    maps, _ = vit
    return build([(info(f"blocks.{i}.attn", i), torch.from_numpy(m)) for i, m in enumerate(maps)], "TinyViT")


def suptitle(fig):
    return fig._suptitle.get_text() if fig._suptitle is not None else ""


def test_titles_say_the_model_layers_heads_and_rollout_settings(vit, declared):
    maps, picture = vit
    geometry = {"grid": (3, 4)}
    assert suptitle(plot_layers(declared)) == "TinyViT: attention by layer (mean of heads)"
    assert suptitle(plot_layers(declared, head=1)) == "TinyViT: attention by layer (head 1)"
    assert suptitle(plot_layers(maps)) == "attention by layer (mean of heads)"  # plain maps: no model
    cls = plot_cls_attention(picture, declared, head=0, **geometry)
    assert suptitle(cls) == "TinyViT: CLS attention over the image (head 0)"
    assert suptitle(plot_attention_flow(declared)) == "TinyViT: attention flow (mean of heads)"
    rolled = plot_rollout(picture, declared, **geometry, head_fusion="max", discard_ratio=0.9, start_layer=1)
    assert (
        panels(rolled)[1].get_title() == "TinyViT: rollout of layers 1-2\n(max of heads, discard ratio 0.9)"
    )
    last = plot_rollout(picture, maps, **geometry, start_layer=-1)
    assert panels(last)[1].get_title() == "rollout of layer 2\n(mean of heads, discard ratio 0)"
    grid = plot_grid_to_grid(picture, maps[0], query=(1, 2), head=1, **geometry)
    assert panels(grid)[1].get_title() == "attention of patch (1, 2), head 1"
    assert panels(plot_head(maps[0], head=None))[0].get_title() == "mean of 2 heads"


@pytest.mark.parametrize("count, shape", [(5, (2, 3)), (6, (2, 3)), (7, (2, 4)), (8, (2, 4)), (12, (3, 4))])
def test_layer_panels_fill_their_grid_and_every_bottom_panel_has_x_labels(rng, count, shape):
    tokens = [f"t{i}" for i in range(6)]
    maps = [softmax_maps(rng, 1, 2, 6, 6) for _ in range(count)]
    fig = plot_layers(maps, tokens=tokens)
    grid = panels(fig)[0].get_subplotspec().get_gridspec()
    assert (grid.nrows, grid.ncols) == shape
    empty = shape[0] * shape[1] - count
    assert empty < shape[1] / 2 + 1  # never a blank half row
    for i, ax in enumerate(panels(fig)):
        below = i + shape[1] < count  # a panel under this one
        labels = [t.get_text() for t in ax.get_xticklabels()]
        assert labels == ([""] * 6 if below else tokens), (i, labels)
        assert ax.get_xlabel() == ("" if below else "key")


def cls_cell(ax):
    """The coloured CLS cell: the filled rectangle at the prefix column's top (not the grey backing)."""
    (cell,) = [
        p
        for p in ax.patches
        if p.get_fill()
        and (p.get_x(), p.get_y()) == (0.0, 0.0)
        and tuple(p.get_facecolor()[:3]) != (0.85,) * 3
    ]
    return tuple(cell.get_facecolor())


def test_a_cls_weight_above_the_patch_scale_gets_a_scale_of_its_own(vit):
    _, picture = vit
    a = np.full((1, 13, 13), 1 / 13)  # CLS + 3x4 patches
    a[0, 5] = [0.4] + [0.05] * 12  # the query (patch 4): 0.4 on CLS, patches at most 0.06
    a[0, 5, 3], a[0, 5, 4] = 0.06, 0.04
    fig = plot_grid_to_grid(picture, a, query=5, grid=(3, 4))
    right = panels(fig)[1]
    heat = right.images[1]
    weight = a[0, 5, 0]
    assert weight > heat.norm.vmax  # on the patches' scale it would be clipped to the top colour
    main, own = sorted(colorbars(fig), key=lambda bar: bar.get_position().x0, reverse=True)
    assert main.get_ylabel() == "attention (patches)" and own.get_ylabel() == f"CLS {weight:.3g} (own scale)"
    assert own._colorbar.norm.vmin == 0 and own._colorbar.norm.vmax == pytest.approx(weight)
    assert cls_cell(right) == pytest.approx(heat.get_cmap()(own._colorbar.norm(weight)))
    assert f"{weight:.2f}" in [t.get_text() for t in right.texts]

    # A CLS weight inside the patches' scale stays on it: one colorbar.
    b = a.copy()
    b[0, 5, 0], b[0, 5, 3] = 0.01, 0.45
    fig = plot_grid_to_grid(picture, b, query=5, grid=(3, 4))
    right = panels(fig)[1]
    (bar,) = colorbars(fig)
    assert bar.get_ylabel() == "attention"
    assert cls_cell(right) == pytest.approx(right.images[1].get_cmap()(right.images[1].norm(0.01)))
