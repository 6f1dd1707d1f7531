"""Token-to-token attention for text, labelled with the tokens themselves (BERT and friends).

>>> tokens = tokenizer.convert_ids_to_tokens(batch["input_ids"][0])
>>> plot_token_heatmap(out.attentions[2], tokens)             # (batch, heads, T, T): head-mean
>>> plot_token_heatmap(out.attentions[2], tokens, head=5, annotate=True)
"""

from __future__ import annotations

import numpy as np

from visualizer.plots._colors import ATTENTION_CMAP
from visualizer.plots._inputs import (
    add_colorbar,
    check_axes,
    draw_matrix,
    figure_for,
    layer_heads,
    single_map,
    token_labels,
)

__all__ = ["plot_token_heatmap"]

#: Maps up to this many tokens per side get their weights written in the cells by default.
ANNOTATE_UP_TO = 12


def plot_token_heatmap(
    attn,
    tokens,
    *,
    key_tokens=None,
    head: int | None = None,
    layer: int | str | None = None,
    call: int | None = None,
    batch: int = 0,
    axes: str = "image",
    annotate: bool | None = None,
    cmap=ATTENTION_CMAP,
    vmin=None,
    vmax=None,
    scale: str | None = None,
    title: str | None = None,
    colorbar: bool = True,
    ax=None,
    figsize=None,
):
    """A token-to-token heatmap with the tokens on both axes.

    >>> fig = plot_token_heatmap(attentions[2], ["[CLS]", "the", "cat", "[SEP]"])

    ``attn`` is one layer's (T, T), (heads, T, T) or (batch, heads, T, T), or several layers
    (``outputs.attentions``, an ``AttentionMaps``) of which ``layer=`` names one (``call=``
    the call of a layer that ran several times); ``head=None`` (the default)
    averages the heads. ``tokens`` label the queries, and the keys too unless
    ``key_tokens`` are given (cross-attention: queries are the target, keys the source).
    ``annotate`` writes each weight in its cell; None does so for maps of up to
    12 tokens a side.
    """
    what = "plot_token_heatmap()"
    check_axes(axes, what)
    m = single_map(layer_heads(attn, layer, call, batch, what), head, what)
    if tokens is None:
        raise TypeError(
            f"{what}: tokens is required, a list of strings with one per query; for a map "
            "without labels use plot_head()"
        )
    queries = token_labels(tokens, m.shape[0], what, "tokens")
    keys = token_labels(key_tokens, m.shape[1], what, "key_tokens") if key_tokens is not None else None
    if keys is None:
        if m.shape[0] != m.shape[1]:
            raise ValueError(
                f"{what}: the map has {m.shape[0]} queries and {m.shape[1]} keys; pass "
                "key_tokens for the keys"
            )
        keys = queries
    if figsize is None:
        side = max(4.0, 0.32 * max(m.shape) + 2.0)
        figsize = (side + 1.0, side)
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
    if annotate is None:
        annotate = max(m.shape) <= ANNOTATE_UP_TO
    if annotate:
        _write_weights(ax, m if axes == "image" else m.T, image)
    if title is None:
        title = "mean over heads" if head is None else f"head {head}"
    ax.set_title(title)
    if colorbar:
        add_colorbar(fig, image, ax=ax, label="attention", shrink=0.8)
    return fig


def _write_weights(ax, shown: np.ndarray, image) -> None:
    """Each cell's weight, dark on light cells and light on dark ones."""
    norm, cmap = image.norm, image.get_cmap()
    for row in range(shown.shape[0]):
        for col in range(shown.shape[1]):
            value = shown[row, col]
            red, green, blue, _ = cmap(norm(value))
            light = 0.299 * red + 0.587 * green + 0.114 * blue > 0.5
            ax.text(
                col,
                row,
                f"{value:.2f}",
                ha="center",
                va="center",
                fontsize=7,
                color="black" if light else "white",
            )
