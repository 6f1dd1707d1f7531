"""Attention over the image: one patch's row (grid-to-grid), CLS attention per layer, rollout.

>>> tensor, shown = prepare_image(image)                     # shown: (224, 224, 3) uint8
>>> plot_grid_to_grid(shown, maps[6], query=(7, 9))          # patch (row 7, col 9) and where it looks
>>> plot_cls_attention(shown, maps, layers=[3, 7, 11])       # the CLS row over the image, per layer
>>> plot_rollout(shown, maps)                                # rollout of all layers, CLS row

Maps are (batch, heads, T, T) with ``T = prefix_tokens + rows * cols``: ``prefix_tokens``
(CLS, registers) lead, then the patches row by row. ``grid`` is (rows, cols): a capture
declares both; for plain maps the grid is inferred from T, square, or else of the image's
aspect ratio. The image is (H, W, 3) uint8 or float in [0, 1], the picture
the model saw (not normalised); patch (r, c) covers the r-th of ``rows`` equal bands from
the top and the c-th of ``cols`` from the left, so overlays line up for any image size.

Every plot here takes ``scale=`` ("linear", "sqrt", "log"), the colour scale of the matrix
plots (:func:`visualizer.plots._inputs.color_norm`). An ``AttentionMaps`` must declare a
tokens layout for the layers drawn: windowed (Swin) and channel (XCiT) layers are refused
with a LayoutError; ``maps.scatter(name)`` gives one windowed layer on the token grid, which
``plot_grid_to_grid(image, maps.scatter(name), prefix_tokens=0, grid=maps.layout(name).size)``
draws.
"""

from __future__ import annotations

import numbers

import numpy as np

from visualizer._arrays import (
    as_array,
    as_maps,
    image_geometry,
    layer_label,
    one_layer,
    pick_layers,
    read_item,
    require_square,
)
from visualizer._structure import require_tokens
from visualizer._validate import index
from visualizer.analysis import rollout
from visualizer.plots._colors import ATTENTION_CMAP
from visualizer.plots._inputs import (
    add_colorbar,
    color_norm,
    figure_for,
    image_rgb,
    model_of,
    mpl,
    panel_grid,
    single_map,
    what_is_shown,
)

__all__ = ["plot_cls_attention", "plot_grid_to_grid", "plot_rollout"]

OUTLINE = {"fill": False, "edgecolor": "red", "linewidth": 2.0}


def plot_grid_to_grid(
    image,
    attn,
    query=None,
    *,
    layer: int | str | None = None,
    call: int | None = None,
    grid=None,
    prefix_tokens: int | None = None,
    head: int | None = None,
    batch: int = 0,
    alpha: float = 0.6,
    cmap=ATTENTION_CMAP,
    vmin=None,
    vmax=None,
    scale: str = "linear",
    title: str | None = None,
    interpolation: str = "nearest",
    ax=None,
    figsize=None,
):
    """One query's attention over the image, the query outlined (the original tool's "grids").

    >>> fig = plot_grid_to_grid(shown, maps, layer=6, query=(7, 9))  # patch at row 7, column 9
    >>> fig = plot_grid_to_grid(shown, maps[6], query=0)        # token 0: the CLS token's row

    ``query`` is a patch as (row, col), a token index (0 is CLS), or None for the centre
    patch. The prefix tokens get a column of cells left of the image, top down (CLS first),
    so the whole attention row is shown, the weight on each written in its cell. When a
    prefix weight lies above the patches' colour scale (it would be clipped to the top
    colour), the prefix cells get a scale of their own, 0 to their largest weight, shown by a
    second colorbar on the left ("CLS (own scale)"), and the main one reads "attention (patches)". The left
    panel shows the image with the query outlined in red, the right one the row over it.
    With ``ax=`` only the right panel is drawn, there. ``attn`` is (heads, T, T) or
    (batch, heads, T, T), or a capture with ``layer=`` (and ``call=``), whose declared patch
    grid and prefix tokens are used; ``grid`` and ``prefix_tokens`` override them, and for
    plain maps default to a square grid after one prefix token. ``head=None`` averages the
    heads. The color scale (``scale``) spans the patches' weights unless ``vmin``/``vmax``
    are given.
    """
    what = "plot_grid_to_grid()"
    rgb = image_rgb(image, f"{what}: image")
    maps = as_maps(attn, f"{what}: attn").maps
    position = one_layer(maps, layer, f"{what}: attn", "layer=i")
    declared = maps.layout(position, -1 if call is None else call)
    require_tokens(declared, f"{what}: layer {position} ({maps.names[position]!r})")
    shape = maps.shape(position, call)
    require_square(shape, what)
    rows, cols, prefix = image_geometry(shape[-1], grid, prefix_tokens, declared, what, aspect=_aspect(rgb))
    q = _query_index(query, rows, cols, prefix, what)
    heads = read_item(maps, position, batch, f"{what}: attn", rows=[q], call=call)
    row = single_map(heads, head, what)[0]
    patches = row[prefix:].reshape(rows, cols)
    norm = color_norm(scale, vmin, vmax, patches, what)
    if ax is None:
        panel = _panel_size(rgb, cols, prefix, 4.6)
        fig, (left, right), _ = panel_grid(2, 2, panel, extra_width=0.9, figsize=figsize, what=what)
        geometry = _draw_image(left, rgb, rows, cols, prefix)
        _outline(left, q, geometry)
        left.set_title(f"query: {_token_name(q, prefix, cols)}")
    else:
        fig, right = figure_for(ax, figsize, what)
    geometry = _draw_image(right, rgb, rows, cols, prefix)
    heat = _overlay(right, patches, geometry, cmap, norm, alpha, interpolation, what)
    # A prefix weight above the patches' scale (CLS often takes 0.07 where patches top out at 0.03)
    # would be clipped to the top colour: those cells then get a scale of their own, with its colorbar.
    weights = row[:prefix]
    own = prefix > 0 and float(weights.max()) > heat.norm.vmax * (1 + 1e-6)
    cells = (
        color_norm(scale, vmin if scale == "log" else 0.0, float(weights.max()), weights, what)
        if own
        else heat.norm
    )
    _prefix_cells(right, weights, geometry, heat.get_cmap(), cells)
    _outline(right, q, geometry)
    right.set_title(title or f"attention of {_token_name(q, prefix, cols)}, {what_is_shown(head)}")
    _solid_colorbar(
        add_colorbar(fig, heat, ax=right, shrink=0.8, label="attention (patches)" if own else "attention")
    )
    if own:
        names = f"CLS {float(weights[0]):.3g}" if prefix == 1 else "prefix tokens"
        scalar = mpl().cm.ScalarMappable(norm=cells, cmap=heat.get_cmap())
        bar = fig.colorbar(scalar, ax=right, location="left", shrink=0.8, label=f"{names} (own scale)")
        bar.ax.yaxis.set_ticks_position("left")
    return fig


def plot_cls_attention(
    image,
    maps,
    *,
    layers=None,
    head: int | None = None,
    query: int = 0,
    grid=None,
    prefix_tokens: int | None = None,
    batch: int = 0,
    ncols: int | None = None,
    show_image: bool = True,
    alpha: float = 0.6,
    cmap=ATTENTION_CMAP,
    vmin=None,
    vmax=None,
    scale: str = "linear",
    title: str | None = None,
    interpolation: str = "nearest",
    ax=None,
    figsize=None,
):
    """The CLS token's attention over the image, one panel per layer.

    >>> fig = plot_cls_attention(shown, maps, layers=[3, 7, 11])

    ``maps`` is an ``AttentionMaps`` or plain maps, as for :func:`visualizer.analysis.rollout`.
    ``query`` is the token whose row is drawn (0: CLS). ``head=None`` averages the heads.
    Each panel says how much of the row's weight lands on the patches at all (the rest goes
    to prefix tokens). Without
    ``vmin``/``vmax`` each panel is scaled to its own maximum, so weak and strong layers are
    both readable (the colorbar then reads "÷ panel max"); with them, all panels share that
    scale. ``scale`` is the color scale ("linear", "sqrt", "log"). ``show_image`` adds the
    plain image first; ``ax=`` draws one selected layer there. An ``AttentionMaps`` captions
    each panel with what its capture declared ("layer 3", "encoder layer 1"), and places each
    layer's keys by the patch grid and prefix tokens it declared (registers included);
    ``grid`` and ``prefix_tokens`` override them, and for plain maps default to a square grid
    after one prefix token.
    """
    what = "plot_cls_attention()"
    rgb = image_rgb(image, f"{what}: image")
    maps = as_maps(maps, f"{what}: maps").maps
    chosen = pick_layers(maps, layers, f"{what}: maps", batch)
    labels = [layer_label(maps.info(i)) for i in chosen]
    geometries = [
        image_geometry(maps.shape(i)[-1], grid, prefix_tokens, maps.layout(i), what, aspect=_aspect(rgb))
        for i in chosen
    ]
    rows, cols, prefix = geometries[0]
    q = _query_index(query, rows, cols, prefix, what)
    if ax is not None and len(chosen) != 1:
        raise ValueError(
            f"{what}: ax= draws one panel, so select one layer (layers=[i]); {len(chosen)} selected"
        )
    fixed = vmin is not None or vmax is not None
    if ax is None:
        count = len(chosen) + bool(show_image)
        panel = _panel_size(rgb, cols, 0, 3.2)
        fig, panels, _ = panel_grid(count, ncols, panel, extra_width=0.9, figsize=figsize, what=what)
        if show_image:
            _draw_image(panels[0], rgb, rows, cols, 0)
            panels[0].set_title("image")
            panels = panels[1:]
    else:
        fig, only = figure_for(ax, figsize, what)
        panels = [only]
    heat = None
    for panel, label, n in zip(panels, labels, range(len(chosen))):
        rows, cols, prefix = geometries[n]
        require_square(maps.shape(chosen[n]), what)
        row = single_map(read_item(maps, chosen[n], batch, f"{what}: maps", rows=[q]), head, what)[0]
        patches = row[prefix:].reshape(rows, cols)
        on_patches = float(patches.sum() / max(row.sum(), 1e-12))
        shown = patches if fixed else patches / max(float(patches.max()), 1e-12)
        # Each panel on its own maximum: 0..1 (log: from the smallest weight shown, up to 1).
        low, high = (vmin, vmax) if fixed else (None if scale == "log" else 0.0, 1.0)
        norm = color_norm(scale, low, high, shown, what)
        geometry = _draw_image(panel, rgb, rows, cols, 0)
        heat = _overlay(panel, shown, geometry, cmap, norm, alpha, interpolation, what)
        panel.set_title(f"{label}\n{on_patches:.0%} on patches", fontsize=9)
    label = "attention" if fixed else "attention ÷ panel max"
    _solid_colorbar(add_colorbar(fig, heat, ax=panels, shrink=0.8, label=label))
    who = "CLS" if q == 0 and prefix else _token_name(q, prefix, cols)
    if ax is None:
        fig.suptitle(title or f"{model_of(maps)}{who} attention over the image ({what_is_shown(head)})")
    elif title:
        panels[0].set_title(title)
    return fig


def plot_rollout(
    image,
    attentions,
    *,
    query: int = 0,
    grid=None,
    prefix_tokens: int | None = None,
    batch: int = 0,
    head_fusion: str = "mean",
    discard_ratio: float = 0.0,
    start_layer: int = 0,
    alpha: float = 0.6,
    cmap=ATTENTION_CMAP,
    vmin=None,
    vmax=None,
    scale: str = "linear",
    title: str | None = None,
    interpolation: str = "nearest",
    ax=None,
    figsize=None,
):
    """Attention rollout of the CLS token (or ``query``) over the image, next to the image.

    >>> fig = plot_rollout(shown, maps, discard_ratio=0.9)
    >>> fig = plot_rollout(shown, rollout(maps)[0], ax=ax)      # a precomputed (T, T) rollout

    ``attentions`` is anything :func:`visualizer.analysis.rollout` takes (``head_fusion``,
    ``discard_ratio`` and ``start_layer`` go to it), or a precomputed rollout: one 2-D
    (T, T) array (plain maps of one head are given as (1, T, T)).
    The query's rollout row over the patches is drawn on the image; the color scale
    (``scale``) spans it unless ``vmin``/``vmax`` are given. ``ax=`` draws only the overlay.
    A capture's declared patch grid and prefix tokens place the keys; ``grid`` and
    ``prefix_tokens`` override them, and for plain maps default to a square grid after one
    prefix token.
    """
    what = "plot_rollout()"
    rgb = image_rgb(image, f"{what}: image")
    declared = None
    if getattr(attentions, "ndim", None) == 2:  # a precomputed rollout
        result = as_array(attentions, f"{what}: attentions")
        require_square(result.shape, what)
        title = "rollout" if title is None else title
    else:
        maps = as_maps(attentions, f"{what}: attentions").maps
        result = rollout(maps, head_fusion=head_fusion, discard_ratio=discard_ratio, start_layer=start_layer)
        result = result[index(batch, result.shape[0], f"{what}: batch", "batch item")]
        declared = maps.layout(0)
        if title is None:
            count = len(maps)
            start = start_layer % count
            span = f"layer {start}" if start == count - 1 else f"layers {start}-{count - 1}"
            fusion = f"{head_fusion} of heads, discard ratio {discard_ratio:g}"
            title = f"{model_of(maps)}rollout of {span}\n({fusion})"
    rows, cols, prefix = image_geometry(
        result.shape[-1], grid, prefix_tokens, declared, what, aspect=_aspect(rgb)
    )
    q = _query_index(query, rows, cols, prefix, what)
    patches = result[q, prefix:].reshape(rows, cols)
    norm = color_norm(scale, vmin, vmax, patches, what)
    if ax is None:
        panel = _panel_size(rgb, cols, 0, 4.4)
        fig, (left, right), _ = panel_grid(2, 2, panel, extra_width=0.9, figsize=figsize, what=what)
        _draw_image(left, rgb, rows, cols, 0)
        left.set_title("image")
    else:
        fig, right = figure_for(ax, figsize, what)
    geometry = _draw_image(right, rgb, rows, cols, 0)
    heat = _overlay(right, patches, geometry, cmap, norm, alpha, interpolation, what)
    right.set_title(title)
    _solid_colorbar(add_colorbar(fig, heat, ax=right, shrink=0.8, label="rollout weight"))
    return fig


# -- drawing on the image -----------------------------------------------------------------------


def _panel_size(rgb: np.ndarray, cols: int, prefix: int, width: float) -> tuple[float, float]:
    """(width, height) in inches of a panel showing the image (and the prefix column), plus its title."""
    height, span = rgb.shape[0], rgb.shape[1] * (1 + (1 / cols if prefix else 0))
    return width, width * height / span + 0.6


class _Geometry:
    """Where patches fall in data coordinates: the image spans x0..x0+W, 0..H (y down)."""

    def __init__(self, height: int, width: int, rows: int, cols: int, prefix: int) -> None:
        self.rows, self.cols, self.prefix = rows, cols, prefix
        self.cell_w, self.cell_h = width / cols, height / rows
        self.x0 = self.cell_w if prefix else 0.0
        self.extent = (self.x0, self.x0 + width, height, 0)  # left, right, bottom, top (origin top left)
        self.height = max(height, prefix * self.cell_h)

    def cell(self, token: int) -> tuple[float, float]:
        """Top-left corner of a token's cell: patches on the image, prefix tokens in the left column."""
        if token < self.prefix:
            return 0.0, token * self.cell_h
        r, c = divmod(token - self.prefix, self.cols)
        return self.x0 + c * self.cell_w, r * self.cell_h


def _draw_image(ax, rgb: np.ndarray, rows: int, cols: int, prefix: int) -> _Geometry:
    geometry = _Geometry(rgb.shape[0], rgb.shape[1], rows, cols, prefix)
    ax.imshow(rgb, extent=geometry.extent, interpolation="antialiased")
    ax.set_xlim(0, geometry.extent[1])
    ax.set_ylim(geometry.height, 0)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    if prefix:
        patches = mpl().patches
        for token in range(prefix):
            x, y = geometry.cell(token)
            ax.add_patch(
                patches.Rectangle(
                    (x, y), geometry.cell_w, geometry.cell_h, facecolor="0.85", edgecolor="0.5", linewidth=0.5
                )
            )
            ax.text(
                x + geometry.cell_w / 2,
                y + geometry.cell_h * 0.12,
                "CLS" if token == 0 else str(token),
                ha="center",
                va="top",
                fontsize=6,
                color="black",
            )
    return geometry


def _overlay(
    ax, values: np.ndarray, geometry: _Geometry, cmap, norm, alpha: float, interpolation: str, what: str
):
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not 0 <= alpha <= 1:
        raise ValueError(f"{what}: alpha must be a number in [0, 1] (the overlay's opacity), not {alpha!r}")
    return ax.imshow(
        values, extent=geometry.extent, cmap=cmap, norm=norm, alpha=alpha, interpolation=interpolation
    )


def _prefix_cells(ax, weights: np.ndarray, geometry: _Geometry, cmap, norm) -> None:
    """Color each prefix token's cell by its weight on ``norm`` (the overlay's or their own), numbered."""
    patches = mpl().patches
    for token, weight in enumerate(weights):
        x, y = geometry.cell(token)
        color = cmap(norm(weight))
        ax.add_patch(
            patches.Rectangle(
                (x, y), geometry.cell_w, geometry.cell_h, facecolor=color, edgecolor="0.3", linewidth=0.5
            )
        )
        ax.text(
            x + geometry.cell_w / 2,
            y + geometry.cell_h * 0.97,  # under the token's name, at the cell's bottom
            f"{weight:.2f}",
            ha="center",
            va="bottom",
            fontsize=6,
            color="black",
            bbox={"facecolor": "white", "alpha": 0.6, "pad": 0.5, "linewidth": 0},
        )


def _outline(ax, token: int, geometry: _Geometry) -> None:
    x, y = geometry.cell(token)
    ax.add_patch(mpl().patches.Rectangle((x, y), geometry.cell_w, geometry.cell_h, **OUTLINE))


def _solid_colorbar(colorbar) -> None:
    """The overlay is translucent; its colorbar should show the colors at full strength."""
    colorbar.solids.set_alpha(1.0)


# -- inputs ---------------------------------------------------------------------------------------


def _aspect(rgb: np.ndarray) -> float:
    """The image's width over its height: a grid of plain maps is inferred to match it."""
    return rgb.shape[1] / rgb.shape[0]


def _query_index(query, rows: int, cols: int, prefix: int, what: str) -> int:
    """A token index from None (centre patch), a token index, or a patch (row, col)."""
    tokens = prefix + rows * cols
    if query is None:
        return prefix + (rows // 2) * cols + cols // 2
    if isinstance(query, numbers.Integral) and not isinstance(query, bool):
        return index(query, tokens, f"{what}: query ({prefix} prefix + {rows} x {cols} patches)", "token")
    if isinstance(query, tuple) and len(query) == 2:
        r = index(query[0], rows, f"{what}: query row", "patch row")
        c = index(query[1], cols, f"{what}: query column", "patch column")
        return prefix + r * cols + c
    raise TypeError(f"{what}: query must be a token index (int), a patch (row, col) or None, not {query!r}")


def _token_name(token: int, prefix: int, cols: int) -> str:
    if token < prefix:
        return "CLS" if token == 0 else f"prefix token {token}"
    r, c = divmod(token - prefix, cols)
    return f"patch ({r}, {c})"
