"""What a relevance is worth: the faithfulness curves of ``visualizer.faithfulness``.

>>> check = faithfulness(model, ids, relevance, target=7)
>>> fig = plot_faithfulness(check)          # the target as tokens are removed, three orders
"""

from __future__ import annotations

import numpy as np

from visualizer.plots._inputs import figure_for

__all__ = ["plot_faithfulness"]

#: (order, label, colour, line style) of each curve.
CURVES = (
    ("most_relevant_first", "most relevant first", "#d62728", "-"),
    ("least_relevant_first", "least relevant first", "#1f77b4", "-"),
    ("random", "random order", "#7f7f7f", "--"),
)


def plot_faithfulness(
    result, *, item: int | None = None, ax=None, title: str | None = None, figsize=(5.5, 3.8)
):
    """The target against the share of tokens removed, one curve per order, with each curve's area
    under the curve in the legend; ``item`` picks one batch item (default: the mean over items).

    ``result`` is what :func:`visualizer.faithfulness` returns. A relevance that ranks the tokens
    the target needs first makes the red curve fall fastest and the blue one last.
    """
    what = "plot_faithfulness()"
    curves = getattr(result, "curves", None)
    fractions = getattr(result, "fractions", None)
    if not isinstance(curves, dict) or fractions is None:
        raise TypeError(f"{what}: takes what visualizer.faithfulness() returns, not {type(result).__name__}")
    batch = next(iter(curves.values())).shape[0]
    if item is not None and (
        isinstance(item, bool) or not isinstance(item, int) or not -batch <= item < batch
    ):
        raise IndexError(f"{what}: item {item!r} is out of range for {batch} items (valid: 0..{batch - 1})")
    fig, ax = figure_for(ax, figsize, what)
    for name, label, colour, style in CURVES:
        values = curves[name]
        shown = values.mean(0) if item is None else values[item]
        area = result.auc[name].mean() if item is None else result.auc[name][item]
        ax.plot(
            100 * np.asarray(fractions),
            shown,
            style,
            color=colour,
            marker="o",
            ms=3,
            label=f"{label} (AUC {area:.3g})",
        )
    ax.set_xlabel("tokens removed (% of those that may be)")
    ax.set_ylabel("target" + (" (mean over items)" if item is None and batch > 1 else ""))
    ax.legend(fontsize=8)
    method = getattr(result, "method", None)
    default = f"faithfulness of {method}" if method else "faithfulness"
    ax.set_title(
        title if title is not None else f"{default}; removed tokens become {result.baseline}", fontsize=9
    )
    return fig
