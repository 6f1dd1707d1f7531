"""Attention matrices as heatmaps: one head, all heads of a layer, a head grid, layers side by side.

>>> plot_head(maps, layer=3, head=2)                # item 0, head 2 of layer 3
>>> plot_heads(outputs.attentions, layer=3)         # every head plus their mean, one shared scale
>>> plot_head_grid(maps[3], tokens)                 # heads with token labels
>>> plot_layers(maps, head=None)                    # the head-mean of each layer
>>> plot_head(maps[3], axes="cartesian")            # origin bottom left, x = query, y = key

Each takes an ``AttentionMaps`` or plain maps (:meth:`AttentionMaps.from_arrays
<visualizer.AttentionMaps.from_arrays>`): one layer's (Q, K), (heads, Q, K) or (batch, heads,
Q, K), or several layers, of which ``layer=`` names the one to draw (``call=`` the call of a
layer that ran several times). ``batch`` picks the item. Each returns a
``matplotlib.figure.Figure``; none calls ``plt.show()``.
"""

from __future__ import annotations

import numpy as np

from visualizer._arrays import as_maps, layer_label, pick_layers, read_item
from visualizer._validate import index, indices
from visualizer.plots._colors import ATTENTION_CMAP
from visualizer.plots._inputs import (
    add_colorbar,
    check_axes,
    color_norm,
    draw_matrix,
    figure_for,
    layer_heads,
    matrix_scale,
    model_of,
    panel_grid,
    single_map,
    token_labels,
    what_is_shown,
)

__all__ = ["plot_head", "plot_head_grid", "plot_heads", "plot_layers"]


def plot_head(
    attn,
    head: int | None = 0,
    *,
    layer: int | str | None = None,
    call: int | None = None,
    batch: int = 0,
    tokens=None,
    key_tokens=None,
    axes: str = "image",
    cmap=ATTENTION_CMAP,
    vmin=None,
    vmax=None,
    scale: str | None = None,
    title: str | None = None,
    colorbar: bool = True,
    ax=None,
    figsize=(5.0, 4.2),
):
    """One head's map with a colorbar.

    >>> fig = plot_head(maps[3], head=2)            # (batch, heads, Q, K) -> item 0, head 2
    >>> fig = plot_head(attn_2d, ax=axes[0, 1])     # (Q, K) into a panel of your own figure

    ``attn`` is one layer's map or several layers (see the module docstring); ``head=None`` draws the mean
    over heads. ``tokens`` label the queries (and the keys too when the map is square,
    unless ``key_tokens`` are given). ``axes="image"`` puts queries on rows from the top and
    keys on columns; ``axes="cartesian"`` puts the origin bottom left, x = query, y = key.
    ``scale`` is "linear", "sqrt" or "log": the last two bring out the many small weights
    next to a few large ones (all matrix plots take it). None (the default) picks "sqrt" up to
    the 99.5th percentile of the weights for maps with more than 64 keys (``DENSE_KEYS``: a
    ViT's 197 or 257 tokens), where a linear scale is nearly all one colour, and "linear"
    for shorter ones; the colorbar shows 0 and, when weights lie above its top, an arrow.
    """
    what = "plot_head()"
    check_axes(axes, what)
    heads = layer_heads(attn, layer, call, batch, what)
    m = single_map(heads, head, f"{what}: attn")
    queries, keys = _labels(tokens, key_tokens, m.shape, what)
    fig, ax = figure_for(ax, figsize, what)
    image = draw_matrix(
        ax,
        m,
        axes=axes,
        cmap=cmap,
        vmin=vmin,
        vmax=vmax,
        query_tokens=queries,
        key_tokens=keys,
        scale=scale,
        what=what,
    )
    if title is None:
        if getattr(attn, "ndim", None) == 2:
            title = "attention"
        elif head is None:
            title = f"mean of {heads.shape[0]} heads"
        else:
            title = f"head {index(head, heads.shape[0], f'{what}: head', 'head')}"
    ax.set_title(title)
    if colorbar:
        add_colorbar(fig, image, ax=ax, label="attention")
    return fig


def plot_heads(
    attn,
    *,
    layer: int | str | None = None,
    call: int | None = None,
    batch: int = 0,
    tokens=None,
    key_tokens=None,
    ncols: int | None = None,
    axes: str = "image",
    cmap=ATTENTION_CMAP,
    vmin=None,
    vmax=None,
    scale: str | None = None,
    title: str | None = None,
    shared_scale: bool = True,
    figsize=None,
):
    """Every head of one layer, plus their mean in the last panel (the original tool's "heads").

    >>> fig = plot_heads(maps[3])                   # 6 heads + mean: 7 panels, 4 per row

    ``attn``, ``layer`` and ``batch`` are as for :func:`plot_head`. With
    ``shared_scale`` all panels share one color scale and one colorbar, so heads compare
    directly; otherwise each panel has its own.
    """
    what = "plot_heads()"
    heads = layer_heads(attn, layer, call, batch, what)
    maps = list(heads) + [heads.mean(axis=0)]
    titles = [f"head {h}" for h in range(heads.shape[0])] + [f"mean of {heads.shape[0]}"]
    return _panels(maps, titles, what, **_styling(locals()))


def plot_head_grid(
    attn,
    tokens=None,
    *,
    layer: int | str | None = None,
    call: int | None = None,
    heads=None,
    batch: int = 0,
    key_tokens=None,
    ncols: int | None = None,
    axes: str = "image",
    cmap=ATTENTION_CMAP,
    vmin=None,
    vmax=None,
    scale: str | None = None,
    title: str | None = None,
    shared_scale: bool = True,
    figsize=None,
):
    """Selected heads of one layer on a grid, with token labels on the outer panels.

    >>> fig = plot_head_grid(maps[2], tokens, heads=[0, 3, 7])

    ``attn``, ``layer`` and ``batch`` are as for :func:`plot_head`; ``heads`` is a list of head indices
    (None: all). ``tokens`` label the queries and, for a square map, the keys.
    """
    what = "plot_head_grid()"
    all_heads = layer_heads(attn, layer, call, batch, what)
    chosen = indices(heads, all_heads.shape[0], f"{what}: heads", "head")
    return _panels([all_heads[h] for h in chosen], [f"head {h}" for h in chosen], what, **_styling(locals()))


def plot_layers(
    maps,
    *,
    head: int | None = None,
    layers=None,
    batch: int = 0,
    tokens=None,
    key_tokens=None,
    ncols: int | None = None,
    axes: str = "image",
    cmap=ATTENTION_CMAP,
    vmin=None,
    vmax=None,
    scale: str | None = None,
    title: str | None = None,
    shared_scale: bool = True,
    figsize=None,
):
    """One panel per layer: the head-mean (``head=None``) or one head of each, to compare layers.

    >>> fig = plot_layers(cache["Attention.forward"])          # 12 x (1, 6, T, T)
    >>> fig = plot_layers(maps, head=0, layers=[0, 5, 11])

    ``maps`` is what :func:`visualizer.analysis.rollout` takes: an ``AttentionMaps`` or
    plain maps (a sequence of per-layer (heads, Q, K) or (batch, heads, Q, K) maps, one
    (layers, batch, heads, Q, K) array), whose panels are captioned with what the capture declared ("layer 3",
    "decoder layer 1, cross"); its selected layers must have a tokens layout (LayoutError
    otherwise). The selected layers must agree in queries and keys.
    """
    what = "plot_layers()"
    maps = as_maps(maps, f"{what}: maps").maps
    chosen = pick_layers(maps, layers, f"{what}: maps", batch)
    panels = [single_map(read_item(maps, i, batch, f"{what}: maps"), head, what) for i in chosen]
    labels = [layer_label(maps.info(i)) for i in chosen]
    if title is None:
        title = f"{model_of(maps)}attention by layer ({what_is_shown(head)})"
    return _panels(panels, labels, what, **_styling(locals()))


#: The arguments of the panel plots that only say how the panels look, passed on to _panels.
_STYLING = (
    "tokens",
    "key_tokens",
    "ncols",
    "axes",
    "cmap",
    "vmin",
    "vmax",
    "scale",
    "title",
    "shared_scale",
    "figsize",
)


def _styling(arguments: dict) -> dict:
    """The styling arguments among a panel plot's ``locals()``."""
    return {name: arguments[name] for name in _STYLING}


def _panels(
    maps: list[np.ndarray],
    titles: list[str],
    what: str,
    *,
    tokens,
    key_tokens,
    ncols,
    axes,
    cmap,
    vmin,
    vmax,
    scale,
    title,
    shared_scale: bool,
    figsize,
):
    check_axes(axes, what)
    queries, keys = _labels(tokens, key_tokens, maps[0].shape, what)
    panel = (3.6, 3.4) if queries is not None or keys is not None else (3.0, 2.8)
    fig, panels, columns = panel_grid(len(maps), ncols, panel, extra_width=0.8, figsize=figsize, what=what)
    every = np.stack(maps)
    extend = "neither"
    if shared_scale:
        scale, vmax = matrix_scale(scale, vmax, every, what)
        norm = color_norm(scale, vmin, vmax, every, what)
        vmin, vmax = norm.vmin, norm.vmax
        extend = "max" if float(every.max()) > vmax * (1 + 1e-6) else "neither"
    images = []
    for i, (ax, m, name) in enumerate(zip(panels, maps, titles)):
        bottom = i + columns >= len(maps)
        left = i % columns == 0
        images.append(
            draw_matrix(
                ax,
                m,
                axes=axes,
                cmap=cmap,
                vmin=vmin,
                vmax=vmax,
                query_tokens=queries,
                key_tokens=keys,
                show_labels=(bottom, left),
                scale=scale,
                what=what,
            )
        )
        ax.set_title(name)
        if not shared_scale:
            add_colorbar(fig, images[-1], ax=ax, shrink=0.8)
    if shared_scale:
        add_colorbar(fig, images[-1], ax=panels, shrink=0.8, label="attention", extend=extend)
    if title:
        fig.suptitle(title)
    return fig


def _labels(tokens, key_tokens, shape, what: str):
    queries = token_labels(tokens, shape[0], what, "tokens")
    if key_tokens is not None:
        keys = token_labels(key_tokens, shape[1], what, "key_tokens")
    else:
        keys = queries if shape[0] == shape[1] else None
    return queries, keys
