"""What a relevance says and what it is worth: :func:`plot_relevance` draws what
``visualizer.explain`` returns, :func:`plot_faithfulness` the curves of ``visualizer.faithfulness``.

>>> relevance = explain(vit, pixels, target=207)
>>> fig = plot_relevance(relevance, shown)  # the patch scores over the image the model saw
>>> relevance = explain(bert, batch, target=cosine)
>>> fig = plot_relevance(relevance, tokens=tokenizer.convert_ids_to_tokens(batch["input_ids"][0]))
>>> check = faithfulness(model, ids, relevance, target=7)
>>> fig = plot_faithfulness(check)          # the target as tokens are removed, three orders

Scores of every method but ``rollout`` and ``attention`` may be negative (input x gradient,
integrated gradients, AttnLRP): when any score drawn is below 0 the colours are diverging
(``RdBu_r``, 0 in the centre, white), else sequential from 0 (the attention colour map), and
the colorbar says which. The explained token itself (``relevance.position``: its own score
holds the identity the relevance starts from) is outlined and left out of the colour scale,
so the other tokens use the whole range; it is still drawn, on that scale (the colorbar gets
an arrow when it lies outside).
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from visualizer._arrays import as_array
from visualizer._validate import check_scale, index, positive_int
from visualizer.plots._colors import ATTENTION_CMAP
from visualizer.plots._inputs import add_colorbar, color_norm, figure_for, image_rgb, mpl, token_labels

__all__ = ["DIVERGING_CMAP", "MAX_TOKENS", "WRAP", "plot_faithfulness", "plot_relevance"]

#: The colours of scores with negative values: red above 0, blue below, white at 0.
DIVERGING_CMAP = "RdBu_r"
#: A text's tokens per row of its strip.
WRAP = 16
#: At most this many tokens of a text are drawn: the window of them that holds the explained token.
MAX_TOKENS = 256
#: The explained token's outline: cyan, apart from both the sequential and the diverging colours.
QUERY_OUTLINE = {"fill": False, "edgecolor": "#00e5ff", "linewidth": 2.5}
#: An image whose width / height is further than this factor from the patch grid's is another picture.
ASPECT_TOLERANCE = 1.1


def plot_relevance(
    relevance,
    image=None,
    *,
    tokens=None,
    item: int = 0,
    ax=None,
    title: str | None = None,
    cmap=None,
    vmin=None,
    vmax=None,
    scale: str = "linear",
    alpha: float = 0.6,
    wrap: int = WRAP,
    max_tokens: int = MAX_TOKENS,
    interpolation: str = "nearest",
    figsize=None,
):
    """Item ``item``'s relevance scores, where they lie: over the image's patches, or along the text.

    >>> fig = plot_relevance(explain(vit, pixels, target=207), shown)
    >>> fig = plot_relevance(explain(bert, batch, target=cosine), tokens=labels)

    ``relevance`` is what :func:`visualizer.explain` returns. Scores over an image (the capture
    declared a patch grid) are drawn on the patch grid, the prefix tokens (CLS, registers)
    left out, over ``image`` (the picture the model saw, (H, W, 3) uint8 or float in [0, 1],
    of the grid's aspect ratio: patch (r, c) covers the r-th of ``rows`` equal bands from the
    top and the c-th of ``cols`` from the left), with opacity ``alpha``; ``image=None`` draws
    the grid alone. Scores over a text are a strip of cells, rows of even length of at most
    ``wrap`` tokens, each cell labelled with its token (``tokens``, one per score; numbered
    when None) and its score; texts longer than ``max_tokens`` show the window of
    ``max_tokens`` tokens that holds the explained token, and a note below the strip says which.

    ``cmap`` defaults to :data:`DIVERGING_CMAP` when a score drawn is negative (the scale is
    then centred at 0: -m..m, m the largest magnitude, unless ``vmin``/``vmax`` are given,
    with ``vmin < 0 < vmax``), else to the attention colour map from 0. ``scale`` is
    "linear", "sqrt" (signed on a diverging scale) or "log" (positive scores only). The title
    names the method, the target and the position explained.
    """
    what = "plot_relevance()"
    scores = _scores(relevance, what)
    batch, count = scores.shape
    item = index(item, batch, f"{what}: item", "batch item")
    scale = check_scale(scale, what)
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not 0 <= alpha <= 1:
        raise ValueError(f"{what}: alpha must be a number in [0, 1] (the overlay's opacity), not {alpha!r}")
    position = relevance.position
    # Encoder-decoder models explain a target-side position over the source tokens: nothing to outline.
    among_scores = (
        isinstance(position, numbers.Integral)
        and 0 <= position < count
        and getattr(relevance, "decoder_scores", None) is None
        and getattr(relevance, "position_rule", None) != "the last target position"
    )
    grid = getattr(relevance.layout, "grid", None)
    draw = _draw_patches if grid is not None else _draw_text
    return draw(
        relevance,
        scores,
        item=item,
        image=image,
        tokens=tokens,
        query=position if among_scores else None,
        ax=ax,
        title=title,
        cmap=cmap,
        limits=(vmin, vmax),
        scale=scale,
        alpha=alpha,
        wrap=wrap,
        max_tokens=max_tokens,
        interpolation=interpolation,
        figsize=figsize,
        what=what,
    )


def _draw_patches(
    relevance,
    scores,
    *,
    item,
    image,
    tokens,
    query,
    ax,
    title,
    cmap,
    limits,
    scale,
    alpha,
    interpolation,
    figsize,
    what,
    **_,
):
    rows, cols = relevance.layout.grid
    prefix = relevance.layout.prefix
    if tokens is not None:
        raise TypeError(
            f"{what}: tokens label the tokens of a text; these scores lie on a {rows} x {cols} patch grid, "
            "which places them on the image: drop tokens"
        )
    try:
        patches = np.asarray(relevance.patches(item), dtype=np.float64)
    except ValueError as exc:
        raise ValueError(f"{what}: {exc}") from None
    cell = divmod(query - prefix, cols) if query is not None and query >= prefix else None
    ranged = np.ones(patches.shape, dtype=bool)
    if cell is not None:
        ranged[cell] = False
    norm, cmap, kind = _colours(patches, patches[ranged], cmap, limits, scale, what)
    if image is not None:
        rgb = image_rgb(image, f"{what}: image")
        _check_fit(rgb, rows, cols, what)
        height, width = rgb.shape[:2]
    else:
        height, width = rows, cols
    if figsize is None:
        figsize = (5.6, 4.4 * height / width + 0.9)
    fig, ax = figure_for(ax, figsize, what)
    extent = (0, width, height, 0)
    if image is not None:
        ax.imshow(rgb, extent=extent, interpolation="antialiased")
    heat = ax.imshow(
        patches,
        extent=extent,
        cmap=cmap,
        norm=norm,
        alpha=alpha if image is not None else None,
        interpolation=interpolation,
    )
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    if cell is not None:
        w, h = width / cols, height / rows
        ax.add_patch(mpl().patches.Rectangle((cell[1] * w, cell[0] * h), w, h, **QUERY_OUTLINE))
    note = {0: "", 1: "the class token is not drawn"}.get(prefix, f"the {prefix} prefix tokens are not drawn")
    _finish(
        fig, ax, heat, patches, kind, scale, relevance, item, scores.shape[0], title, note, {"shrink": 0.8}
    )
    return fig


def _draw_text(
    relevance,
    scores,
    *,
    item,
    image,
    tokens,
    query,
    ax,
    title,
    cmap,
    limits,
    scale,
    wrap,
    max_tokens,
    figsize,
    what,
    **_,
):
    count = scores.shape[1]
    if image is not None:
        raise ValueError(
            f"{what}: these scores are over {count} tokens of a text (the capture declared no patch grid), "
            "so there is no image to draw them on: drop image"
        )
    labels = token_labels(tokens, count, what) or [str(i) for i in range(count)]  # None: numbered
    wrap = positive_int(wrap, f"{what}: wrap")
    max_tokens = positive_int(max_tokens, f"{what}: max_tokens")
    start, stop = _window(count, query if query is not None else 0, max_tokens)
    shown = scores[item, start:stop].astype(np.float64)
    rows = -(-len(shown) // wrap)
    cols = -(-len(shown) // rows)  # rows of even length: 17 tokens are 9 + 8, not 16 + 1
    cells = np.full(rows * cols, np.nan)
    cells[: len(shown)] = shown
    cells = np.ma.masked_invalid(cells.reshape(rows, cols))  # the cells after the last token: blank
    ranged = np.ones(len(shown), dtype=bool)
    if query is not None and start <= query < stop:
        ranged[query - start] = False
    norm, cmap, kind = _colours(shown, shown[ranged], cmap, limits, scale, what)
    if figsize is None:
        figsize = (0.8 * cols + 1.6, 0.5 * rows + 1.1)
    fig, ax = figure_for(ax, figsize, what)
    heat = ax.imshow(cells, cmap=cmap, norm=norm, aspect="auto", interpolation="nearest")
    ax.set_xticks(np.arange(cols + 1) - 0.5, minor=True)
    ax.set_yticks(np.arange(rows + 1) - 0.5, minor=True)
    ax.grid(which="minor", color="white", linewidth=1.5)
    ax.tick_params(which="both", length=0)
    ax.set_xticks([])
    ax.set_yticks([])
    colormap = heat.get_cmap()
    for number, (label, value) in enumerate(zip(labels[start:stop], shown)):
        row, col = divmod(number, cols)
        red, green, blue, _ = colormap(norm(value))
        colour = "black" if 0.299 * red + 0.587 * green + 0.114 * blue > 0.5 else "white"
        text = label if len(label) <= 10 else label[:9] + "\u2026"
        ax.text(col, row - 0.1, text, ha="center", va="center", fontsize=8, color=colour, parse_math=False)
        ax.text(col, row + 0.28, f"{value:.2g}", ha="center", va="center", fontsize=5.5, color=colour)
    if query is not None and start <= query < stop:
        row, col = divmod(query - start, cols)
        outline = mpl().patches.Rectangle((col - 0.45, row - 0.45), 0.9, 0.9, zorder=3, **QUERY_OUTLINE)
        ax.add_patch(outline)
    note = f"tokens {start}..{stop - 1} of {count} shown" if stop - start < count else ""
    bar = {"location": "bottom", "shrink": min(1.0, 4.0 / figsize[0] + 0.2), "aspect": 30}  # a strip's: below
    _finish(fig, ax, heat, shown, kind, scale, relevance, item, scores.shape[0], title, note, bar)
    return fig


# -- colours ----------------------------------------------------------------------------------------


def _colours(drawn: np.ndarray, ranged: np.ndarray, cmap, limits, scale: str, what: str):
    """(norm, colour map, "diverging" or "sequential") of ``drawn``; ``ranged`` sets the range."""
    finite = drawn[np.isfinite(drawn)]
    ranged = ranged[np.isfinite(ranged)]
    if not ranged.size:  # only the explained token: it sets the range itself
        ranged = finite
    vmin, vmax = (_limit(value, name, what) for value, name in zip(limits, ("vmin", "vmax")))
    if not (finite < 0).any():
        return (
            color_norm(scale, vmin, vmax, ranged, what),
            ATTENTION_CMAP if cmap is None else cmap,
            "sequential",
        )
    if scale == "log":
        raise ValueError(
            f"{what}: scale='log' cannot show the negative scores of this relevance; use 'linear' or 'sqrt' "
            "(signed square root, centred at 0)"
        )
    magnitude = float(np.abs(ranged).max()) if ranged.size else 1.0
    magnitude = magnitude if magnitude > 0 else 1e-12
    high = vmax if vmax is not None else (-vmin if vmin is not None else magnitude)
    low = vmin if vmin is not None else -high
    if not low < 0 < high:
        raise ValueError(
            f"{what}: these scores are negative and positive, on a scale centred at 0: give vmin < 0 < vmax, "
            f"not vmin={low:g}, vmax={high:g}"
        )
    colors = mpl().colors
    if scale == "sqrt":
        norm = colors.FuncNorm(_signed_sqrt(low, high), vmin=low, vmax=high, clip=True)
    else:
        norm = colors.TwoSlopeNorm(0.0, vmin=low, vmax=high)
    return norm, DIVERGING_CMAP if cmap is None else cmap, "diverging"


def _signed_sqrt(low: float, high: float):
    """(forward, inverse) of a square-root scale on each side of 0: low -> -1, 0 -> 0, high -> 1."""

    def forward(x):
        x = np.asarray(x, dtype=np.float64)
        return np.where(x >= 0, np.sqrt(np.clip(x, 0, None) / high), -np.sqrt(np.clip(-x, 0, None) / -low))

    def inverse(y):
        y = np.asarray(y, dtype=np.float64)
        return np.where(y >= 0, high * y**2, low * y**2)

    return forward, inverse


def _limit(value, name: str, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise TypeError(f"{what}: {name} must be a finite number or None, not {value!r}")
    return float(value)


def _finish(
    fig, ax, heat, drawn, kind: str, scale: str, relevance, item: int, batch: int, title, note: str, bar: dict
):
    """The colorbar (an arrow where drawn scores lie beyond its ends), the title, and ``note`` (what
    is not drawn) below the plot."""
    norm = heat.norm
    finite = np.asarray(drawn, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    above = finite.size and finite.max() > norm.vmax + 1e-9 * abs(norm.vmax)
    below = finite.size and finite.min() < norm.vmin - 1e-9 * abs(norm.vmin)
    extend = "both" if above and below else "max" if above else "min" if below else "neither"
    how = "diverging, 0 at the centre" if kind == "diverging" else "sequential, from 0"
    if kind == "sequential" and norm.vmin != 0:
        how = f"sequential, from {norm.vmin:.2g}"
    label = f"relevance ({how}{'' if scale == 'linear' else ', ' + scale})"
    colorbar = add_colorbar(fig, heat, ax=ax, label=label, extend=extend, **bar)
    colorbar.solids.set_alpha(
        1.0
    )  # the overlay is translucent; the colorbar shows the colours at full strength
    if bar.get("location") == "bottom" and not isinstance(norm, mpl().colors.PowerNorm):  # sqrt: its own
        colorbar.ax.xaxis.set_major_locator(mpl().ticker.MaxNLocator(nbins=4))  # labels side by side: few
    ax.set_title(_title(relevance, item, batch) if title is None else title, fontsize=9)
    if note:
        ax.set_xlabel(note, fontsize=8)


def _title(relevance, item: int, batch: int) -> str:
    """``"attention_grad relevance of target 207\\nat position 0 (the class token)"``."""
    target = relevance.target
    named = (
        f"target {target}"
        if isinstance(target, numbers.Integral) and not isinstance(target, bool)
        else target
    )
    where = f"at position {relevance.position}"
    rule = getattr(relevance, "position_rule", None)
    if rule:
        where += f" ({rule})"
    if batch > 1:
        where += f", item {item}"
    return f"{relevance.method} relevance of {named}\n{where}"


# -- inputs -----------------------------------------------------------------------------------------


def _scores(relevance, what: str) -> np.ndarray:
    """(batch, tokens) float scores of a Relevance, checked."""
    if not all(hasattr(relevance, name) for name in ("scores", "method", "target", "position", "layout")):
        raise TypeError(
            f"{what}: takes what visualizer.explain() returns (a Relevance), not {type(relevance).__name__}"
        )
    scores = as_array(relevance.scores, f"{what}: relevance.scores")
    if scores.ndim != 2 or 0 in scores.shape:
        raise ValueError(f"{what}: relevance.scores must be (batch, tokens), not shape {scores.shape}")
    return scores


def _check_fit(rgb: np.ndarray, rows: int, cols: int, what: str) -> None:
    """ValueError unless the image could be the one the model saw as a ``rows`` x ``cols`` patch grid."""
    height, width = rgb.shape[:2]
    if height < rows or width < cols:
        raise ValueError(
            f"{what}: the image is {width} x {height} px (width x height), smaller than the {rows} x {cols} "
            "patch grid the scores lie on; pass the image the model saw"
        )
    if abs(math.log((width / height) / (cols / rows))) > math.log(ASPECT_TOLERANCE):
        raise ValueError(
            f"{what}: the image is {width} x {height} px (width x height, aspect {width / height:.2f}) but "
            f"the scores lie on a {rows} x {cols} patch grid (rows x cols, aspect {cols / rows:.2f}): not "
            "the picture the model saw; pass that one (e.g. prepare_image()'s display image), or image=None "
            "for the grid alone"
        )


def _window(count: int, query: int, limit: int) -> tuple[int, int]:
    """(start, stop) of the at most ``limit`` tokens drawn: the first ones, else those ending at ``query``."""
    if count <= limit:
        return 0, count
    if query < limit:
        return 0, limit
    return query + 1 - limit, query + 1


# -- faithfulness -----------------------------------------------------------------------------------

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
