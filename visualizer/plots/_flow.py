"""Attention across a model: the flow through its stacks, and mean attention distance against depth.

>>> plot_attention_flow(maps, source_tokens=src, target_tokens=tgt)     # encoder-decoder: 3 columns
>>> plot_attention_flow(bert_maps, tokens=tokens)                       # one stack: 1 column
>>> plot_attention_distance(vit_maps, patch_size=14)       # the ViT paper's Fig. 7, for your model
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from visualizer._arrays import as_maps, one_layer, pick_layers, read_item
from visualizer._maps import AttentionMaps
from visualizer._structure import require_tokens
from visualizer._validate import indices
from visualizer.analysis import mean_attention_distance
from visualizer.plots._colors import ATTENTION_CMAP
from visualizer.plots._inputs import (
    add_colorbar,
    check_axes,
    draw_matrix,
    figure_for,
    model_of,
    mpl,
    panel_grid,
    single_map,
    token_labels,
    what_is_shown,
)

__all__ = ["plot_attention_distance", "plot_attention_flow"]

#: The columns of the flow figure, left to right: (stack, key in a block's dict, heading,
#: which tokens label the queries, which the keys). A figure shows those its maps have.
FLOW = (
    ("encoder", "self_attention", "encoder self-attention\nsource → source", "source", "source"),
    ("decoder", "self_attention", "decoder self-attention\ntarget → target", "target", "target"),
    ("decoder", "cross_attention", "cross-attention\ntarget → source", "target", "source"),
    ("layers", "self_attention", "self-attention\ntoken → token", "tokens", "tokens"),
    ("layers", "cross_attention", "cross-attention\ntoken → key", "tokens", None),
)


def plot_attention_flow(
    structured,
    *,
    layers=None,
    head: int | None = None,
    batch: int = 0,
    call: int | None = None,
    source_tokens=None,
    target_tokens=None,
    tokens=None,
    axes: str = "image",
    cmap=ATTENTION_CMAP,
    vmin=None,
    vmax=None,
    scale: str | None = None,
    title: str | None = None,
    figsize=None,
):
    """Attention through the model's stacks, one row per block: encoder self → decoder self → cross.

    >>> fig = plot_attention_flow(maps, source_tokens=src, target_tokens=tgt)   # an encoder-decoder
    >>> fig = plot_attention_flow(maps.structured(), layers=[-1])               # the same, as a dict
    >>> fig = plot_attention_flow(bert_maps, tokens=tokens)                     # a single stack

    ``structured`` is an ``AttentionMaps`` (its :meth:`structured` is read, for ``call``
    when its layers ran several times) or plain maps (a Hugging Face ``outputs`` declares its
    encoder, decoder and cross attentions; :meth:`AttentionMaps.from_arrays`), or that dict:
    ``{'encoder': [{'self_attention': map}, ...], 'decoder': [{'self_attention': map,
    'cross_attention': map}, ...]}`` for an encoder-decoder model,
    ``{'layers': [{'self_attention': map}, ...]}`` for a model with
    one stack (an encoder or a decoder alone works too); or any object with a
    ``structured()`` method returning it. The figure has one column per kind of map present
    (see :data:`FLOW`), one row per block; ``layers`` selects rows (None: all), and a stack
    with fewer blocks leaves its cells empty. Each map is (heads, Q, K) or (batch, heads,
    Q, K); ``head=None`` averages the heads. Cross-attention has the target tokens as
    queries and the source tokens as keys; ``tokens`` label a single stack. Each panel has
    its own colorbar, since the kinds of map differ in scale.

    An ``AttentionMaps`` captions rows with each block's declared depth, and must declare a
    tokens layout for every layer (windowed and channel layers are refused: LayoutError).
    A block's second attention of one kind (``'self_attention:<path>'``) is not drawn.
    """
    what = "plot_attention_flow()"
    check_axes(axes, what)
    layout, depth_of = _structure(structured, call, what)
    columns = [column for column in FLOW if any(column[1] in block for block in layout.get(column[0]) or [])]
    if not columns:
        raise ValueError(
            f"{what} needs blocks under 'encoder'/'decoder' or 'layers', each a dict with "
            f"'self_attention' or 'cross_attention'; got {_describe(layout)}"
        )
    stacks = {stack: list(layout.get(stack) or []) for stack, *_ in columns}
    rows = indices(layers, max(len(blocks) for blocks in stacks.values()), f"{what}: layers", "layer")
    labels = {"source": source_tokens, "target": target_tokens, "tokens": tokens}
    width = len(columns)
    fig, panels, _ = panel_grid(
        width * len(rows), width, (3.8, 3.2), extra_width=0.6, figsize=figsize, what=what
    )
    for r, layer in enumerate(rows):
        for c, (stack, key, heading, query_side, key_side) in enumerate(columns):
            ax = panels[width * r + c]
            blocks = stacks[stack]
            if layer >= len(blocks) or key not in blocks[layer]:
                ax.set_visible(False)
                continue
            attention = blocks[layer][key]
            where = f"{what}: {stack}[{layer}]['{key}']"
            one = as_maps(attention, where).maps
            m = single_map(
                read_item(one, one_layer(one, None, where, "one map per entry"), batch, where), head, where
            )
            queries = token_labels(labels[query_side], m.shape[0], what, f"{query_side}_tokens")
            keys = (
                None
                if key_side is None
                else token_labels(labels[key_side], m.shape[1], what, f"{key_side}_tokens")
            )
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
            depth = depth_of.get(id(attention), layer)
            heading = (heading if width == 1 or c == 0 else "→ " + heading) + "\n" if r == 0 else ""
            ax.set_title(heading + f"layer {depth}", fontsize=9)
            add_colorbar(fig, image, ax=ax, shrink=0.75)
    fig.suptitle(title or f"{model_of(structured)}attention flow ({what_is_shown(head)})")
    return fig


def _structure(structured, call, what: str) -> tuple[Mapping, dict[int, int]]:
    """The structured dict, and the declared depth of each of its maps (by identity) where known."""
    if callable(getattr(structured, "structured", None)) and not isinstance(structured, AttentionMaps):
        structured = structured.structured()  # an object that gives the dict
    elif not isinstance(structured, Mapping) or not all(
        isinstance(blocks, (list, tuple)) and all(isinstance(block, Mapping) for block in blocks)
        for blocks in structured.values()
    ):  # not the dict: maps, converted (a Hugging Face output declares its stacks)
        structured = as_maps(structured, f"{what}: structured").maps
    if isinstance(structured, AttentionMaps):
        infos = structured.infos
        for i, info in enumerate(infos):
            require_tokens(info.layout, f"{what}: layer {i} ({info.path!r})")
        layout = structured.structured(call)
        maps = [structured[i] if call is None else structured[i, call] for i in range(len(infos))]
        return layout, {id(m): info.depth for m, info in zip(maps, infos)}
    if call is not None:
        raise ValueError(
            f"{what}: call= picks a call of an AttentionMaps; pass maps.structured(call) as it is"
        )
    return structured, {}


def plot_attention_distance(
    maps,
    *,
    grid=None,
    prefix_tokens: int | None = None,
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

    ``maps`` is an ``AttentionMaps`` or plain maps, as for :func:`visualizer.analysis.rollout`
    (x is each block's declared depth; the selected layers must have a tokens layout,
    LayoutError otherwise). Each dot is one head
    of one layer: the attention-weighted mean distance between query and key patches
    (:func:`visualizer.analysis.mean_attention_distance`, ``renormalize`` goes to it), in
    patches, or pixels when ``patch_size`` is given. A capture's declared patch grid and prefix
    tokens place each layer's keys; ``grid`` and ``prefix_tokens`` override them, and for plain
    maps default to a square grid after one prefix token.
    ``batch=None`` averages the distance over the batch, as the paper averages over
    images; an int picks one item. ``cmap`` colors the heads; ``vmin``/``vmax`` set the
    y-axis limits. The black line is the mean over heads.
    """
    what = "plot_attention_distance()"
    maps = as_maps(maps, f"{what}: maps").maps
    chosen = pick_layers(maps, layers, f"{what}: maps", batch)
    distances = []
    for i in chosen:  # each read a block of rows at a time: no layer is built whole
        d = mean_attention_distance(
            maps, grid=grid, cls_token=prefix_tokens, patch_size=patch_size, renormalize=renormalize, layer=i
        )
        distances.append(np.nanmean(d, axis=0) if batch is None else d[batch])
    infos = maps.infos
    if len({infos[i].role for i in chosen}) == 1:
        chosen = [infos[i].depth for i in chosen]  # the declared depth of each block
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
    ax.set_title(title or f"{model_of(maps)}mean attention distance per head")
    return fig


def _describe(layout) -> str:
    return "{" + ", ".join(f"{stack!r}: {len(layers)} layer(s)" for stack, layers in layout.items()) + "}"
