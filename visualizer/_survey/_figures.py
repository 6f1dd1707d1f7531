"""A survey's figures (matplotlib, any backend; the command line uses Agg).

>>> plot_distance(result)       # every head's mean attention distance against depth (ViT paper, Fig. 7)
>>> plot_entropy(result)        # mean entropy, layers x heads, as a heatmap
>>> plot_sink(result)           # mass on token 0 (CLS / first token) per layer: each head and their mean
>>> plot_cls_maps(result)       # the mean CLS map over the patch grid per layer (mean of heads)

Each returns a ``matplotlib.figure.Figure`` and leaves pyplot's state alone.
"""

from __future__ import annotations

import numpy as np

__all__ = ["plot_cls_maps", "plot_distance", "plot_entropy", "plot_sink"]


def _figure(size):
    from matplotlib.figure import Figure

    return Figure(figsize=size, layout="constrained")


def _title(result, text: str, title: str | None) -> str:
    if title is not None:
        return title
    model = result.meta.get("model") or "model"
    return f"{model}: {text} ({result.inputs} inputs)"


def plot_distance(result, title: str | None = None):
    """Each head's mean attention distance (a dot) against the layer, the mean of heads as a line."""
    mean = result.mean("distance")
    g = result.tally.geometry
    unit = "pixels" if g is not None and g.patch_size != 1 else "patches"
    figure = _figure((6.4, 4.2))
    axes = figure.add_subplot()
    layers = np.arange(mean.shape[0])
    for head in range(mean.shape[1]):
        axes.scatter(
            layers, mean[:, head], s=18, alpha=0.75, label=f"head {head}" if mean.shape[1] <= 16 else None
        )
    axes.plot(layers, np.nanmean(mean, axis=1), color="black", lw=1.2, label="mean of heads")
    if g is not None:
        axes.axhline(g.diagonal, color="grey", lw=0.8, ls=":", label="grid diagonal")
    axes.set_xlabel("network depth (layer)")
    axes.set_ylabel(f"mean attention distance ({unit})")
    axes.set_xticks(layers)
    axes.set_ylim(bottom=0)
    axes.legend(fontsize=6, loc="center left", bbox_to_anchor=(1.01, 0.5))
    axes.set_title(_title(result, "mean attention distance", title), fontsize=9)
    return figure


def plot_entropy(result, title: str | None = None):
    """The mean row entropy (nats) of each layer (rows) and head (columns)."""
    mean = result.mean("entropy")
    figure = _figure((1.6 + 0.45 * mean.shape[1], 1.4 + 0.35 * mean.shape[0]))
    axes = figure.add_subplot()
    image = axes.imshow(mean, cmap="viridis", aspect="auto")
    if mean.size <= 400:
        low, high = image.get_clim()
        for (layer, head), value in np.ndenumerate(mean):
            if np.isfinite(value):
                shade = "black" if value > (low + high) / 2 else "white"  # readable on viridis' yellow
                axes.text(head, layer, f"{value:.1f}", ha="center", va="center", fontsize=6, color=shade)
    axes.set_xlabel("head")
    axes.set_ylabel("layer")
    axes.set_xticks(range(mean.shape[1]))
    axes.set_yticks(range(mean.shape[0]))
    figure.colorbar(image, ax=axes, label="entropy (nats)")
    axes.set_title(_title(result, "attention entropy", title), fontsize=9)
    return figure


def plot_sink(result, title: str | None = None):
    """The mean weight on token 0 per layer: each head (dots) and their mean (line), in [0, 1]."""
    mean = result.mean("sink")
    figure = _figure((6.4, 3.6))
    axes = figure.add_subplot()
    layers = np.arange(mean.shape[0])
    for head in range(mean.shape[1]):
        axes.scatter(layers, mean[:, head], s=14, alpha=0.6, color="tab:blue")
    axes.plot(layers, np.nanmean(mean, axis=1), color="tab:red", lw=1.5, marker="o", label="mean of heads")
    axes.set_ylim(0, 1)
    axes.set_xticks(layers)
    axes.set_xlabel("layer")
    axes.set_ylabel("attention mass on token 0")
    axes.legend(fontsize=7)
    axes.set_title(_title(result, "mass on the first (CLS) token", title), fontsize=9)
    return figure


def plot_cls_maps(result, title: str | None = None, ncols: int = 6):
    """The mean CLS attention over the patch grid, one panel per layer (mean of heads)."""
    maps = result.cls_map()
    if maps is None:
        raise ValueError("this survey has no CLS map: it needs images on a patch grid with a prefix token")
    fused = np.nanmean(maps, axis=1)
    layers = fused.shape[0]
    cols = min(ncols, layers)
    rows = -(-layers // cols)
    figure = _figure((1.7 * cols, 1.8 * rows + 0.4))
    for layer in range(layers):
        axes = figure.add_subplot(rows, cols, layer + 1)
        axes.imshow(fused[layer], cmap="inferno")
        axes.set_title(f"layer {layer}", fontsize=7)
        axes.set_axis_off()
    figure.suptitle(_title(result, "mean CLS attention", title), fontsize=9)
    return figure
