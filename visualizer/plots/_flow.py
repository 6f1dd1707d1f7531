"""Attention across a model: the encoder-decoder flow, and mean attention distance against depth.

>>> plot_attention_flow(maps.structured(), source_tokens=src, target_tokens=tgt)
>>> plot_attention_distance(vit_maps, patch_size=14)       # the ViT paper's Fig. 7, for your model
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from visualizer._arrays import prefix_count
from visualizer.analysis import mean_attention_distance
from visualizer.plots._inputs import (
    add_colorbar,
    check_axes,
    draw_matrix,
    figure_for,
    index_selection,
    layer_selection,
    mpl,
    panel_grid,
    single_map,
    token_labels,
)

__all__ = ["plot_attention_distance", "plot_attention_flow"]

#: The three columns of the flow figure: (stack, key in a layer's dict, heading).
FLOW = (
    ("encoder", "self_attention", "encoder self-attention\nsource → source"),
    ("decoder", "self_attention", "→ decoder self-attention\ntarget → target"),
    ("decoder", "cross_attention", "→ cross-attention\ntarget → source"),
)


def plot_attention_flow(
    structured,
    *,
    layers=None,
    head: int | None = None,
    batch: int = 0,
    source_tokens=None,
    target_tokens=None,
    axes: str = "image",
    cmap="viridis",
    vmin=None,
    vmax=None,
    scale: str = "linear",
    title: str | None = None,
    figsize=None,
):
    """Encoder-decoder attention, one row per layer: encoder self → decoder self → cross.

    >>> fig = plot_attention_flow(maps.structured(), source_tokens=src, target_tokens=tgt)
    >>> fig = plot_attention_flow(maps, layers=[-1])            # AttentionMaps: structured() is called

    ``structured`` is ``{'encoder': [{'self_attention': map}, ...], 'decoder':
    [{'self_attention': map, 'cross_attention': map}, ...]}`` (``AttentionMaps.structured()``),
    or an object with that ``structured()`` method. Each map is (heads, Q, K) or (batch,
    heads, Q, K); ``head=None`` averages the heads. ``layers`` selects rows (None: all); a
    stack with fewer layers leaves its cells empty. Cross-attention has the target tokens
    as queries and the source tokens as keys; each panel has its own colorbar, since the
    three kinds of map differ in scale.
    """
    what = "plot_attention_flow()"
    check_axes(axes, what)
    layout = structured.structured() if callable(getattr(structured, "structured", None)) else structured
    if not isinstance(layout, Mapping):
        raise TypeError(
            f"{what}: structured must be the dict from AttentionMaps.structured() or an object "
            f"with that method, not {type(structured).__name__}"
        )
    encoder, decoder = list(layout.get("encoder") or []), list(layout.get("decoder") or [])
    if not encoder or not decoder or not any("cross_attention" in layer for layer in decoder):
        raise ValueError(
            f"{what} needs an encoder-decoder model: encoder layers, and decoder layers with "
            f"'cross_attention'; got {_describe(layout)}"
        )
    rows = index_selection(layers, max(len(encoder), len(decoder)), f"{what}: layers", "layers")
    labels = {"source": source_tokens, "target": target_tokens}
    fig, panels, _ = panel_grid(3 * len(rows), 3, (3.8, 3.2), extra_width=0.6, figsize=figsize, what=what)
    for r, layer in enumerate(rows):
        for c, (stack, key, heading) in enumerate(FLOW):
            ax = panels[3 * r + c]
            block = encoder if stack == "encoder" else decoder
            if layer >= len(block) or key not in block[layer]:
                ax.set_visible(False)
                continue
            m = single_map(block[layer][key], batch, head, f"{what}: {stack}[{layer}]['{key}']")
            query_side = "source" if stack == "encoder" else "target"
            key_side = "target" if key == "self_attention" and stack == "decoder" else "source"
            queries = token_labels(labels[query_side], m.shape[0], what, f"{query_side}_tokens")
            keys = token_labels(labels[key_side], m.shape[1], what, f"{key_side}_tokens")
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
            ax.set_title((heading + "\n" if r == 0 else "") + f"layer {layer}", fontsize=9)
            add_colorbar(fig, image, ax=ax, shrink=0.75)
    fused = "mean over heads" if head is None else f"head {head}"
    fig.suptitle(title or f"attention flow ({fused})")
    return fig


def plot_attention_distance(
    maps,
    *,
    grid=None,
    prefix_tokens: int = 1,
    patch_size: float = 1,
    batch: int | None = None,
    layers=None,
    renormalize: bool = True,
    cmap="tab10",
    vmin=None,
    vmax=None,
    title: str | None = None,
    ax=None,
    figsize=(6.0, 4.2),
):
    """Mean attention distance of every head against layer depth, as in the ViT paper (Fig. 7).

    >>> fig = plot_attention_distance(maps, patch_size=14)      # y in pixels, 14 px patches

    ``maps`` is a sequence of per-layer (heads, T, T) or (batch, heads, T, T) maps, or one
    stacked array. Each dot is one head of one layer: the attention-weighted mean distance
    between query and key patches (:func:`visualizer.analysis.mean_attention_distance`,
    ``renormalize`` goes to it), in patches, or pixels when ``patch_size`` is given.
    ``batch=None`` averages the distance over the batch, as the paper averages over
    images; an int picks one item. ``cmap`` colors the heads; ``vmin``/``vmax`` set the
    y-axis limits. The black line is the mean over heads.
    """
    what = "plot_attention_distance()"
    chosen, selected = layer_selection(maps, batch, layers, f"{what}: maps")
    prefix = prefix_count(prefix_tokens, f"{what}: prefix_tokens")
    distances = []
    for layer in selected:
        d = mean_attention_distance(
            layer, grid, cls_token=prefix, patch_size=patch_size, renormalize=renormalize
        )
        distances.append(np.nanmean(d, axis=0) if d.ndim == 2 else d)
    fig, ax = figure_for(ax, figsize, what)
    colormap = mpl().colormaps[cmap] if isinstance(cmap, str) else cmap
    heads = max(len(d) for d in distances)
    for h in range(heads):
        # A qualitative map (tab10, tab20) gives each head its own color; a continuous one spreads them.
        color = colormap(h % colormap.N) if colormap.N <= 20 else colormap(h / max(heads - 1, 1))
        points = [(layer, d[h]) for layer, d in zip(chosen, distances) if h < len(d)]
        ax.scatter(*zip(*points), s=22, color=color, label=f"head {h}", zorder=3)
    means = [float(np.nanmean(d)) for d in distances]
    ax.plot(chosen, means, color="black", linewidth=1, label="mean", zorder=2)
    unit = "patches" if patch_size == 1 else "pixels"
    ax.set_xlabel("layer")
    ax.set_ylabel(f"mean attention distance ({unit})")
    ax.set_xticks(chosen)
    ax.set_ylim(0 if vmin is None else vmin, vmax)
    ax.grid(True, alpha=0.3)
    if heads <= 16:
        ax.legend(fontsize=7, ncols=2 if heads > 6 else 1, loc="best")
    ax.set_title(title or "mean attention distance per head")
    return fig


def _describe(layout) -> str:
    return "{" + ", ".join(f"{stack!r}: {len(layers)} layer(s)" for stack, layers in layout.items()) + "}"
