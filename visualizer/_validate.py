"""One policy for checking what callers pass: indices, counts and colour scales.

>>> indices([0, -1], 12, "layers", "layer")            # None: all; an int; or a sequence of ints
[0, 11]
>>> index(-2, 6, "head", "head")
4
>>> positive_int(3, "top_k_pairs(): k")
3
>>> color_limits("sqrt", None, None, np.array([0.0, 0.5]), "plot_head()")
(0.0, 0.5)

The policy, the same everywhere (analysis, plots, views, the CLI, and capture's layer
indices):

- an index is an ``int`` (numpy integers too); a bool, a float or a string is a
  **TypeError**;
- negative indices count from the end; one outside ``-size..size-1`` is an **IndexError**
  that names the valid range;
- a selection is None (everything), one index, or a sequence of them, in the order given;
  an empty one, or one naming the same item twice, is a **ValueError**;
- a count (``k``, ``ncols``) is an ``int`` of at least 1: TypeError for another type,
  ValueError for a smaller value.

``argument`` names what the caller passed, as the message should show it
(``"plot_layers(): layers"``, ``"--heads"``); ``what`` is the singular noun of the things
indexed (``"layer"``, ``"head"``, ``"attention module"``). Pure Python and numpy.
"""

from __future__ import annotations

import math
import numbers
import operator
import sys


def _bools() -> tuple:
    """bool, and numpy's bool when numpy is in use (this module imports no numpy itself, so the
    command line's checks run on a core-only install)."""
    numpy = sys.modules.get("numpy")
    return (bool, numpy.bool_) if numpy is not None else (bool,)


__all__ = [
    "SCALES",
    "check_scale",
    "color_limits",
    "index",
    "indices",
    "non_negative_int",
    "positions",
    "positive_int",
]

#: Colour scales of every plot: linear, square root (a power of 0.5) and logarithmic.
SCALES = ("linear", "sqrt", "log")


def _integer(value, argument: str, what: str) -> int:
    if isinstance(value, _bools()):
        raise TypeError(f"{argument}: a {what} index must be an int, not the bool {value!r}")
    if isinstance(value, numbers.Integral):
        return int(value)
    try:
        return operator.index(value)  # 0-d integer tensors and other __index__ types
    except TypeError:
        raise TypeError(
            f"{argument}: a {what} index must be an int, not {value!r} ({type(value).__name__})"
        ) from None


def _valid_range(size: int, what: str) -> str:
    if size == 0:
        return f"there are no {what}s"
    return f"there are {size} {what}s (valid: 0..{size - 1}, or -{size}..-1)"


def index(value, size: int, argument: str, what: str) -> int:
    """One checked index into ``size`` things, made non-negative."""
    position = _integer(value, argument, what)
    if not -size <= position < size:
        raise IndexError(f"{argument}: {what} {position} is out of range; {_valid_range(size, what)}")
    return position % size


def indices(items, size: int, argument: str, what: str) -> list[int]:
    """Checked, non-negative indices, in the order given; None selects all ``size`` of them."""
    if items is None:
        return list(range(size))
    if isinstance(items, (numbers.Integral, *_bools())) or (
        hasattr(items, "__index__") and getattr(items, "ndim", 0) == 0
    ):
        items = [items]
    if isinstance(items, (str, bytes)):
        raise TypeError(f"{argument} must be None, an int or a list of ints, not the string {items!r}")
    try:
        listed = list(items)
    except TypeError:
        raise TypeError(
            f"{argument} must be None, an int or a list of ints, not {type(items).__name__}"
        ) from None
    if not listed:
        raise ValueError(f"{argument} is empty: select at least one {what}, or pass None for all of them")
    chosen = [index(item, size, argument, what) for item in listed]
    if len(set(chosen)) != len(chosen):
        repeated = sorted({i for i in chosen if chosen.count(i) > 1})
        raise ValueError(
            f"{argument} selects {what} {', '.join(map(str, repeated))} more than once ({listed}); "
            f"name each {what} once"
        )
    return chosen


def positions(selector, size: int, what: str = "query row") -> list[int] | slice:
    """A read's selector (an int, a slice, a sequence or a 1-D tensor or array of ints, negative
    from the end) as non-negative positions among ``size``; a slice stays a slice. Unlike
    :func:`indices`, a position may repeat (rows of a map are read, not selected)."""
    if isinstance(selector, slice):
        return selector
    if isinstance(selector, _bools()):
        raise TypeError(f"a {what} is an int, a slice, a list or a tensor of ints, not {selector!r}")
    if hasattr(selector, "tolist"):  # a tensor, an array or a numpy scalar: 0-D or 1-D, of integers
        listed = selector.tolist()
        values = listed if isinstance(listed, list) else [listed]
        if any(isinstance(v, bool) or not isinstance(v, int) for v in values):  # bools, floats, 2-D rows
            raise TypeError(
                f"{what}s as a tensor must be a 0-D or 1-D integer tensor, not {selector.dtype} "
                f"{tuple(selector.shape)}"
            )
    elif isinstance(selector, numbers.Integral):
        values = [selector]
    else:
        try:
            values = list(selector)
        except TypeError:
            raise TypeError(
                f"a {what} is an int, a slice, a list or a tensor of ints, not {type(selector).__name__}"
            ) from None
        if any(isinstance(v, _bools()) or not isinstance(v, numbers.Integral) for v in values):
            raise TypeError(f"{what}s must be ints, not {values!r}")
    for value in values:
        if not -size <= value < size:
            raise IndexError(f"{what} {value} is out of range: there are {size} (0..{size - 1})")
    return [int(value) % size for value in values]


def positive_int(value, argument: str) -> int:
    """An int of at least 1 (a count: ``k``, ``ncols``)."""
    return _at_least(value, 1, argument)


def non_negative_int(value, argument: str) -> int:
    """An int of at least 0 (a size that may be zero: ``cache_bytes``)."""
    return _at_least(value, 0, argument)


def _at_least(value, minimum: int, argument: str) -> int:
    if isinstance(value, _bools()) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{argument} must be an int >= {minimum}, not {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"{argument} must be an int >= {minimum}, not {value}")
    return int(value)


def check_scale(scale, argument: str) -> str:
    """One of :data:`SCALES`."""
    if not isinstance(scale, str) or scale not in SCALES:
        raise ValueError(f"{argument}: scale must be one of {SCALES}, not {scale!r}")
    return scale


def _limit(value, name: str, argument: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, _bools()) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise TypeError(f"{argument}: {name} must be a finite number or None, not {value!r}")
    return float(value)


def color_limits(scale: str, vmin, vmax, values, argument: str) -> tuple[float, float]:
    """(low, high) of a colour scale over ``values``; ``vmin``/``vmax`` override the data's range.

    ``log`` starts at the smallest positive weight, but no lower than 1e-4 of the maximum
    when ``vmin`` is not given, so exact zeros do not stretch it; it needs ``vmin > 0``.
    A constant map gets a sliver of range so that it still has a colour.
    """
    check_scale(scale, argument)
    low, high = _limit(vmin, "vmin", argument), _limit(vmax, "vmax", argument)
    if low is not None and high is not None and low >= high:
        raise ValueError(f"{argument}: vmin ({low:g}) must be below vmax ({high:g})")
    import numpy as np

    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    if high is None:
        high = float(finite.max()) if finite.size else 1.0
    if scale == "log":
        if low is None:
            positive = finite[finite > 0]
            low = max(float(positive.min()), high * 1e-4) if positive.size else None
        if low is None or low <= 0:
            raise ValueError(
                f"{argument}: a log scale needs vmin > 0 and some positive weights, not vmin={vmin!r}; "
                "use scale='sqrt' for maps with zeros"
            )
        return low, max(high, low * (1 + 1e-9))
    if low is None:
        low = float(finite.min()) if finite.size else 0.0
    if high <= low:
        high = low + 1e-12
    return low, high
