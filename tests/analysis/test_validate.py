"""visualizer._validate: one policy for indices, counts and colour scales, wherever they are checked."""

import numpy as np
import pytest
import torch

from visualizer._validate import SCALES, check_scale, color_limits, index, indices, positive_int


def test_indices_take_none_an_int_or_a_sequence_and_count_negatives_from_the_end():
    assert indices(None, 4, "layers", "layer") == [0, 1, 2, 3]
    assert indices(-1, 4, "layers", "layer") == [3]
    assert indices([2, -4, np.int64(1)], 4, "layers", "layer") == [2, 0, 1]  # order kept
    assert indices(range(1, 3), 4, "layers", "layer") == [1, 2]
    assert indices(np.array([0, 3]), 4, "layers", "layer") == [0, 3]
    assert indices(torch.tensor(2), 4, "layers", "layer") == [2]
    assert index(-2, 6, "head", "head") == 4


@pytest.mark.parametrize(
    "items, error, match",
    [
        ([4], IndexError, r"layers: layer 4 is out of range; there are 4 layers \(valid: 0..3, or -4..-1\)"),
        (-5, IndexError, r"layer -5 is out of range"),
        ([True], TypeError, "not the bool True"),
        (False, TypeError, "not the bool False"),
        ([1.0], TypeError, r"must be an int, not 1.0 \(float\)"),
        (["0"], TypeError, "not '0'"),
        ("0", TypeError, "not the string '0'"),
        (3.5, TypeError, "not float"),
        ([], ValueError, "layers is empty: select at least one layer"),
        ([1, -3], ValueError, r"selects layer 1 more than once \(\[1, -3\]\)"),
    ],
)
def test_indices_refuse_bools_non_ints_out_of_range_empty_and_repeats(items, error, match):
    with pytest.raises(error, match=match):
        indices(items, 4, "layers", "layer")


def test_an_empty_range_says_so():
    with pytest.raises(IndexError, match="there are no layers"):
        index(0, 0, "layers", "layer")


def test_positive_int():
    assert positive_int(np.int32(3), "k") == 3
    with pytest.raises(ValueError, match="k must be an int >= 1, not 0"):
        positive_int(0, "k")
    with pytest.raises(TypeError, match="k must be an int >= 1, not True"):
        positive_int(True, "k")
    with pytest.raises(TypeError, match=r"not 2.0 \(float\)"):
        positive_int(2.0, "k")


def test_color_limits_of_each_scale():
    values = np.array([0.0, 1e-7, 0.01, 0.5, np.nan])
    assert SCALES == ("linear", "sqrt", "log")
    assert color_limits("linear", None, None, values, "f()") == (0.0, 0.5)
    assert color_limits("sqrt", 0.1, None, values, "f()") == (0.1, 0.5)
    # log: the smallest positive weight, but no lower than 1e-4 of the maximum.
    assert color_limits("log", None, None, values, "f()") == (0.5e-4, 0.5)
    assert color_limits("log", None, None, np.array([0.2, 0.4]), "f()") == (0.2, 0.4)
    low, high = color_limits("linear", None, None, np.full(3, 0.25), "f()")  # constant: still a range
    assert low == 0.25 and high > low


@pytest.mark.parametrize(
    "scale, vmin, vmax, values, error, match",
    [
        ("cubic", None, None, [0.5], ValueError, "scale must be one of"),
        ("linear", 0.5, 0.2, [0.5], ValueError, r"vmin \(0.5\) must be below vmax \(0.2\)"),
        ("linear", "0", None, [0.5], TypeError, "vmin must be a finite number"),
        ("linear", None, np.inf, [0.5], TypeError, "vmax must be a finite number"),
        ("log", 0.0, None, [0.5], ValueError, "log scale needs vmin > 0"),
        ("log", None, None, [0.0, 0.0], ValueError, "scale='sqrt' for maps with zeros"),
    ],
)
def test_color_limits_refuse(scale, vmin, vmax, values, error, match):
    with pytest.raises(error, match=match):
        color_limits(scale, vmin, vmax, np.array(values), "f()")
    if error is ValueError and "scale must" in match:
        with pytest.raises(ValueError, match=match):
            check_scale(scale, "f()")
