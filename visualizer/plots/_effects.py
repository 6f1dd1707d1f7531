"""What ablating each head does: a (layers, heads) heat map of ``head_effects``.

>>> effects = head_effects(model, ids, metric=copy_loss)
>>> fig = plot_head_effects(effects)                 # red: the metric rose; blue: it fell
"""

from __future__ import annotations

import numpy as np

from visualizer.plots._inputs import add_colorbar, figure_for, label_fontsize, mpl

__all__ = ["plot_head_effects"]


def plot_head_effects(
    effects,
    *,
    layers=None,
    metric: str = "metric",
    annotate: bool | None = None,
    cmap="RdBu_r",
    vmax: float | None = None,
    title: str | None = None,
    ax=None,
    figsize=None,
):
    """One cell per head: how much ablating it alone changed the metric, on a diverging scale
    centred at 0 (red: up, blue: down).

    ``effects`` is what :func:`visualizer.head_effects` returns (its layer paths label the
    rows), or a (layers, heads) array, or a list of per-layer (heads,) arrays (layers with
    fewer heads leave their cells blank). ``layers`` labels the rows of an array (default
    ``layer 0``, ``layer 1``, ...). ``metric`` names the metric on the colour bar. ``annotate``
    writes each value in its cell (default: when there are at most 12 x 12 cells). ``vmax``:
    the scale runs from ``-vmax`` to ``vmax`` (default the largest absolute effect).
    """
    what = "plot_head_effects()"
    values = getattr(effects, "values", effects)
    names = getattr(effects, "layers", None)
    if isinstance(values, np.ndarray) or hasattr(values, "__array__") and not isinstance(values, list):
        grid = np.asarray(values, dtype=float)
        if grid.ndim != 2 or not grid.size:
            raise ValueError(f"{what}: effects must be a (layers, heads) array, got shape {grid.shape}")
    elif isinstance(values, (list, tuple)) and values:
        rows = [np.asarray(row, dtype=float) for row in values]
        if any(row.ndim != 1 or not row.size for row in rows):
            raise ValueError(f"{what}: a list of effects holds one (heads,) array per layer")
        grid = np.full((len(rows), max(row.size for row in rows)), np.nan)
        for i, row in enumerate(rows):
            grid[i, : row.size] = row
    else:
        raise TypeError(
            f"{what}: effects must be a head_effects() result, a (layers, heads) array or a list "
            f"of per-layer arrays, not {type(values).__name__}"
        )
    if not np.isfinite(grid[~np.isnan(grid)]).all():
        raise ValueError(f"{what}: the effects hold infinite values; the metric overflowed")
    if layers is not None:
        names = [str(name) for name in layers]
    if names is None:
        names = [f"layer {i}" for i in range(grid.shape[0])]
    if len(names) != grid.shape[0]:
        raise ValueError(f"{what}: {len(names)} layer names for {grid.shape[0]} rows of effects")
    if vmax is None:
        vmax = float(np.nanmax(np.abs(grid))) or 1.0
    elif isinstance(vmax, bool) or not isinstance(vmax, (int, float)) or not 0 < vmax < np.inf:
        raise ValueError(f"{what}: vmax must be a positive finite number, got {vmax!r}")
    matplotlib = mpl()
    rows, cols = grid.shape
    if figsize is None:
        figsize = (min(max(6.0, 3.5 + 0.5 * cols), 14), min(max(3.0, 1.6 + 0.4 * rows), 12))
    fig, ax = figure_for(ax, figsize, what)
    norm = matplotlib.colors.TwoSlopeNorm(vcenter=0.0, vmin=-vmax, vmax=vmax)
    image = ax.imshow(
        np.ma.masked_invalid(grid), cmap=cmap, norm=norm, aspect="auto", interpolation="nearest"
    )
    ax.set_xlabel("head")
    ax.set_xticks(range(cols) if cols <= 32 else ax.get_xticks())
    shown = rows <= 40
    ax.set_yticks(range(rows) if shown else [])
    if shown:
        ax.set_yticklabels(names, fontsize=label_fontsize(rows))
    if annotate is None:
        annotate = rows <= 12 and cols <= 12
    if annotate:
        for (i, j), value in np.ndenumerate(grid):
            if not np.isnan(value):
                dark = abs(value) > 0.6 * vmax
                ax.text(
                    j,
                    i,
                    f"{value:.2g}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if dark else "black",
                )
    add_colorbar(fig, image, ax=ax, label=f"change in {metric}\n(ablated \u2212 clean)", extend="neither")
    how = getattr(effects, "how", None)
    ax.set_title(title if title is not None else "head effects" + (f" ({how} ablation)" if how else ""))
    return fig
