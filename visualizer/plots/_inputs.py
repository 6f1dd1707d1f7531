"""What every plot shares: matplotlib loaded lazily, inputs checked, panels laid out.

>>> m = single_map(read_item(maps, 3, 0, "plot_head()"), None, "plot_head()")   # (queries, keys)
>>> fig, axes, ncols = panel_grid(7, ncols=4, panel=(3.0, 3.0))              # 2 x 4, one hidden

Figures are made with ``matplotlib.figure.Figure``, never through pyplot: they are not
registered in pyplot's global list, so a loop of plots leaks nothing, nothing is shown by
itself, and any backend (Agg included) works. Jupyter still displays a returned Figure.
They use matplotlib's "compressed" layout: the constrained layout made for grids of
fixed-aspect images, which keeps titles and labels inside the figure when a colorbar
spans several panels (plain "constrained" clips them there).
"""

from __future__ import annotations

import io

import numpy as np

from visualizer._arrays import as_maps, as_rgb_uint8, one_layer, read_item
from visualizer._validate import SCALES, check_scale, color_limits, index, positive_int

__all__ = [
    "AXES",
    "SCALES",
    "check_axes",
    "color_norm",
    "draw_matrix",
    "figure_for",
    "image_rgb",
    "layer_heads",
    "DENSE_KEYS",
    "DENSE_QUANTILE",
    "label_fontsize",
    "matrix_scale",
    "model_of",
    "what_is_shown",
    "mpl",
    "panel_grid",
    "single_map",
    "token_labels",
]

#: Matrix orientations: "image" puts the origin top left (rows = queries, columns = keys);
#: "cartesian" puts it bottom left with x = query and y = key.
AXES = ("image", "cartesian")

# SCALES (from visualizer._validate): the color scales of every plot, see color_norm.

#: Matrix plots default to ``scale="sqrt"`` for maps with more keys than this, "linear" below.
#: A softmax row over T keys averages 1/T: past ~64 keys (a ViT's 197 or 257 tokens) a linear
#: scale paints nearly every cell the bottom colour and only the few large weights show.
DENSE_KEYS = 64

#: The default top of a dense map's colour scale, as a quantile of its weights: the 0.5% largest
#: (a query's own key, a CLS or register column) would otherwise squash the rest into the bottom colours.
DENSE_QUANTILE = 0.995

#: At most this many ticks on a matrix's axes (whole token positions), so labels never collide.
MATRIX_TICKS = 6


def matrix_scale(scale, vmax, values: np.ndarray, what: str = "plot") -> tuple[str, float | None]:
    """(scale, vmax) of a matrix plot: ``scale`` and ``vmax`` as given, or the defaults for None.

    A map with more than :data:`DENSE_KEYS` keys defaults to ``"sqrt"`` with ``vmax`` at the
    :data:`DENSE_QUANTILE` quantile of its weights (the colorbar then ends in an arrow: the
    few weights above it share the top colour; pass ``vmax=`` for the full range); a shorter
    one to ``"linear"`` over the whole range.
    """
    values = np.asarray(values)
    if scale is not None:
        return check_scale(scale, what), vmax
    if values.shape[-1] <= DENSE_KEYS:
        return "linear", vmax
    if vmax is None and values.size:
        vmax = float(np.nanquantile(values, DENSE_QUANTILE))
        vmax = vmax if vmax > 0 else None
    return "sqrt", vmax


def model_of(maps) -> str:
    """``"VisionTransformer: "``, the model's name and a colon, for a capture; "" for plain maps."""
    name = getattr(maps, "model_name", None)
    return f"{name}: " if isinstance(name, str) and name else ""


def what_is_shown(head) -> str:
    """The heads a map fuses, as titles say it: ``"mean of heads"`` or ``"head 3"``."""
    return "mean of heads" if head is None else f"head {head}"


def mpl():
    """The matplotlib package, imported on first use, with the submodules the plots need."""
    try:
        import matplotlib
        import matplotlib.axes
        import matplotlib.cm
        import matplotlib.colors
        import matplotlib.figure
        import matplotlib.patches
        import matplotlib.ticker
    except ImportError:
        raise ImportError(
            'visualizer.plots needs matplotlib: pip install -c constraints.txt -e ".[plot]"'
        ) from None
    return matplotlib


def new_figure(figsize):
    """A figure that pyplot does not manage, and that Jupyter shows by itself (``_repr_png_``)."""
    return _figure_class()(figsize=figsize, layout="compressed")


_FIGURE_CLASS = None


def _figure_class():
    global _FIGURE_CLASS
    if _FIGURE_CLASS is None:

        class AttentionFigure(mpl().figure.Figure):
            """A matplotlib Figure that displays as a PNG in Jupyter without pyplot or %matplotlib."""

            def _repr_png_(self) -> bytes:
                buffer = io.BytesIO()
                self.savefig(buffer, format="png", bbox_inches="tight")
                return buffer.getvalue()

        AttentionFigure.__module__ = __name__  # pickles by reference: see __getattr__ below
        AttentionFigure.__qualname__ = "AttentionFigure"
        _FIGURE_CLASS = AttentionFigure
    return _FIGURE_CLASS


def __getattr__(name: str):
    # The figure class is built on first use, so that importing plots imports no matplotlib;
    # an unpickled figure asks for it here.
    if name == "AttentionFigure":
        return _figure_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def figure_for(ax, figsize, what: str):
    """(figure, axes): a new one-panel figure, or the figure of the ``ax`` the caller gave."""
    matplotlib = mpl()
    if ax is None:
        fig = new_figure(figsize)
        return fig, fig.add_subplot()
    if not isinstance(ax, matplotlib.axes.Axes):
        raise TypeError(f"{what}: ax must be a matplotlib Axes or None, not {type(ax).__name__}")
    fig = ax.figure
    while getattr(fig, "figure", fig) is not fig:  # a SubFigure: colorbars and savefig live on the root
        fig = fig.figure
    return fig, ax


def panel_grid(
    count: int,
    ncols: int | None,
    panel: tuple[float, float],
    extra_width: float = 0.0,
    figsize=None,
    what: str = "plot",
):
    """(figure, panels, ncols): ``count`` panels on a grid, as a flat list; unused cells are hidden.

    The grid is always two-dimensional (``squeeze=False``), so one row or one panel works.
    """
    if ncols is None:
        # Up to 4 panels: one row. Up to 8: 3 or 4 a row, more: 4 to 6, whichever leaves the fewest
        # empty cells (6 panels: 3 + 3, not 4 + 2 beside a blank half row).
        widths = range(3, 5) if count <= 8 else range(4, 7)
        ncols = count if count <= 4 else min(widths, key=lambda n: (-count % n, n))
    ncols = min(positive_int(ncols, f"{what}: ncols"), count)
    nrows = -(-count // ncols)
    if figsize is None:
        figsize = (panel[0] * ncols + extra_width, panel[1] * nrows + 0.4)
    fig = new_figure(figsize)
    grid = fig.subplots(nrows, ncols, squeeze=False)
    flat = list(grid.ravel())
    for extra in flat[count:]:
        extra.set_visible(False)
    return fig, flat[:count], ncols


def layer_heads(attn, layer, call, batch, what: str) -> np.ndarray:
    """(heads, queries, keys) of item ``batch`` of the one layer ``attn`` holds or ``layer`` names."""
    maps = as_maps(attn, f"{what}: attn").maps
    position = one_layer(maps, layer, f"{what}: attn", "layer=i")
    return read_item(maps, position, batch, f"{what}: attn", call=call)


def single_map(heads: np.ndarray, head, what: str) -> np.ndarray:
    """(queries, keys) of (heads, queries, keys): one head, or the mean over heads when ``head`` is None."""
    if head is None:
        return heads.mean(axis=0)
    return heads[index(head, heads.shape[0], f"{what}: head", "head")]


def check_axes(axes: str, what: str) -> str:
    if axes not in AXES:
        raise ValueError(
            f"{what}: axes must be 'image' (origin top left) or 'cartesian' "
            f"(origin bottom left, x = query, y = key), not {axes!r}"
        )
    return axes


def token_labels(tokens, count: int, what: str, argument: str = "tokens") -> list[str] | None:
    """Token strings checked against the map's size; None stays None."""
    if tokens is None:
        return None
    if isinstance(tokens, str):
        raise TypeError(
            f"{what}: {argument} must be a list of strings, one per token, not one str; "
            "e.g. tokenizer.convert_ids_to_tokens(ids)"
        )
    labels = [str(t) for t in tokens]
    if len(labels) != count:
        raise ValueError(
            f"{what}: {argument} has {len(labels)} labels but the map has {count} tokens on that axis"
        )
    return labels


def label_fontsize(count: int) -> float:
    """Smaller tick labels for longer sequences, never unreadably small for short ones."""
    return float(max(4.0, min(10.0, 360.0 / max(count, 1))))


def color_norm(scale: str, vmin, vmax, values: np.ndarray, what: str):
    """The matplotlib norm of every plot: ``linear``, ``sqrt`` (a power of 0.5) or ``log``.

    Limits default to 0 (for weights >= 0; log: the smallest weight) and the data's maximum
    (:func:`visualizer._validate.color_limits`). Attention is
    mostly tiny weights and a few large ones: ``sqrt`` and ``log`` show the structure a
    linear scale crushes to one color.
    """
    colors = mpl().colors
    if vmin is None and scale != "log" and np.size(values) and np.nanmin(values) >= 0:
        vmin = 0.0  # weights: the scale starts at 0, and the colorbar shows it
    low, high = color_limits(scale, vmin, vmax, values, what)
    if scale == "log":
        return colors.LogNorm(low, high, clip=True)
    if scale == "sqrt":
        return colors.PowerNorm(0.5, low, high, clip=True)
    return colors.Normalize(low, high)


def add_colorbar(fig, mappable, **kwargs):
    """``fig.colorbar``, with ticks evenly spread along a square-root scale, and an arrow at the top
    (``extend="max"``) when the mappable holds weights above the scale's top, unless ``extend`` is given.

    On a ``sqrt`` scale the default ticks (0.1, 0.2, ...) bunch together at the top, where
    the scale is compressed, and their labels overlap.
    """
    norm = mappable.norm
    if "extend" not in kwargs:
        data = mappable.get_array()
        above = data is not None and np.size(data) and float(np.nanmax(data)) > norm.vmax * (1 + 1e-6)
        kwargs["extend"] = "max" if above else "neither"
    bar = fig.colorbar(mappable, **kwargs)
    if isinstance(norm, mpl().colors.PowerNorm) and norm.vmax > norm.vmin:
        positions = np.linspace(0.0, 1.0, 5) ** (1.0 / norm.gamma)
        ticks = norm.vmin + (norm.vmax - norm.vmin) * positions
        rounded = [float(f"{tick:.2g}") for tick in ticks]
        bar.set_ticks(rounded, labels=[f"{tick:.2g}" for tick in rounded])
    return bar


def draw_matrix(
    ax,
    m: np.ndarray,
    *,
    axes: str,
    cmap,
    vmin,
    vmax,
    query_tokens=None,
    key_tokens=None,
    show_labels=(True, True),
    scale: str | None = None,
    interpolation: str = "antialiased",
    what: str = "plot",
):
    """Draw one (queries, keys) map on ``ax`` in the chosen orientation; returns the image artist.

    ``image``: row q is drawn q-th from the top, key k is the k-th column (x = key, y = query).
    ``cartesian``: the transpose with the origin bottom left (x = query, y = key).
    "antialiased" interpolation keeps cells sharp when a map is enlarged and averages them
    when a long map is shrunk, so single strong weights do not vanish between pixels.
    """
    if axes == "image":
        shown, origin, xlabel, ylabel = m, "upper", "key", "query"
        xticks, yticks = key_tokens, query_tokens
    else:
        shown, origin, xlabel, ylabel = m.T, "lower", "query", "key"
        xticks, yticks = query_tokens, key_tokens
    scale, vmax = matrix_scale(scale, vmax, m, what)
    norm = color_norm(scale, vmin, vmax, m, what)
    image = ax.imshow(
        shown,
        origin=origin,
        cmap=cmap,
        norm=norm,
        interpolation=interpolation,
        aspect="equal" if max(shown.shape) <= 3 * min(shown.shape) else "auto",
    )
    show_x, show_y = show_labels
    # Whole token positions (never 2.5), a handful of them, so labels cannot run together.
    ax.xaxis.set_major_locator(mpl().ticker.MaxNLocator(nbins=MATRIX_TICKS, integer=True))
    ax.yaxis.set_major_locator(mpl().ticker.MaxNLocator(nbins=MATRIX_TICKS, integer=True))
    if xticks is not None:
        ax.set_xticks(
            range(len(xticks)),
            xticks if show_x else [""] * len(xticks),
            rotation=90,
            fontsize=label_fontsize(len(xticks)),
        )
    if yticks is not None:
        ax.set_yticks(
            range(len(yticks)), yticks if show_y else [""] * len(yticks), fontsize=label_fontsize(len(yticks))
        )
    if show_x:
        ax.set_xlabel(xlabel)
    if show_y:
        ax.set_ylabel(ylabel)
    return image


def image_rgb(image, what: str) -> np.ndarray:
    """An (H, W, 3) float image in [0, 1]: the 8-bit picture :func:`as_rgb_uint8` checks and makes, / 255."""
    return as_rgb_uint8(image, what) / 255.0
