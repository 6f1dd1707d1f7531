"""visualizer._arrays: the input handling that analysis, plots and view share."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from visualizer._arrays import as_array, as_rgb_uint8, patch_grid, prefix_count
from visualizer.plots._inputs import image_rgb

# -- as_array ---------------------------------------------------------------------------------


def test_as_array_widens_for_arithmetic_or_keeps_integers():
    assert as_array(np.arange(3, dtype=np.uint8), "x").dtype == np.float64
    assert as_array([True, False], "x").dtype == np.float64
    assert as_array(np.ones(2, np.float16), "x").dtype == np.float32
    kept = as_array(np.arange(3, dtype=np.uint8), "x", keep_integers=True)
    assert kept.dtype == np.uint8 and kept.tolist() == [0, 1, 2]
    assert as_array(np.ones(2, np.float16), "x", keep_integers=True).dtype == np.float32


def test_as_array_takes_tensors_of_every_dtype_off_the_graph():
    x = torch.tensor([[0.25, 0.75]], requires_grad=True)
    for dtype, expected in [
        (torch.bfloat16, np.float32),
        (torch.float16, np.float32),
        (torch.float64, np.float64),
        (torch.float32, np.float32),
    ]:
        a = as_array(x.to(dtype) * 1, "x")
        assert isinstance(a, np.ndarray) and a.dtype == expected
        np.testing.assert_allclose(a, [[0.25, 0.75]])
    assert as_array(torch.arange(3, dtype=torch.uint8), "x", keep_integers=True).dtype == np.uint8


@pytest.mark.parametrize(
    "value, match",
    [
        ("maps.npy", r"attn must be a numpy array or a torch tensor, not str"),
        (None, "not NoneType"),
        ({"a": 1}, "not dict"),
        ([[1, 2], [3]], "not list"),
        (np.array([1j]), r"must hold real numbers, not dtype complex128 \(from ndarray\)"),
        (np.array(["a"]), r"must hold real numbers, not dtype <U1"),
    ],
)
def test_as_array_refuses_what_is_not_real_numbers(value, match):
    with pytest.raises(TypeError, match=match):
        as_array(value, "attn")


def test_as_array_never_imports_torch():
    code = (
        "import sys, numpy as np; from visualizer._arrays import as_array, as_maps, as_rgb_uint8; "
        "as_array(np.ones(2), 'x'); as_rgb_uint8(np.zeros((2, 2)), 'x'); "
        "maps = as_maps([np.ones((1, 2, 2))], 'x').maps; maps.read(0, batch=0, heads=[0], rows=slice(1)); "
        "maps.stack(); print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


# -- prefix tokens and the patch grid (indices: test_validate.py) ------------------------------


def test_prefix_count_and_patch_grid():
    assert prefix_count(True, "cls") == 1 and prefix_count(5, "cls") == 5
    with pytest.raises(ValueError, match="count >= 0 of prefix tokens, not -1"):
        prefix_count(-1, "cls")
    assert patch_grid(17, None, 1, "f()") == (4, 4) and patch_grid(13, (3, 4), 1, "f()") == (3, 4)
    with pytest.raises(ValueError, match="leave 12 patches, not a square number"):
        patch_grid(13, None, 1, "f()")


# -- as_rgb_uint8 -----------------------------------------------------------------------------


def test_every_image_form_comes_out_as_the_same_rgb_uint8():
    rng = np.random.default_rng(1)
    picture = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    np.testing.assert_array_equal(as_rgb_uint8(picture), picture)
    np.testing.assert_array_equal(as_rgb_uint8(picture / 255.0), picture)
    np.testing.assert_array_equal(as_rgb_uint8(picture.astype(np.float32) / 255), picture)
    np.testing.assert_array_equal(as_rgb_uint8(picture.astype(np.int64)), picture)
    np.testing.assert_array_equal(as_rgb_uint8(np.dstack([picture, picture[..., :1]])), picture)
    np.testing.assert_array_equal(as_rgb_uint8(torch.from_numpy(picture)), picture)
    np.testing.assert_array_equal(as_rgb_uint8(torch.from_numpy(picture / 255.0)), picture)
    gray = as_rgb_uint8(picture[..., 1:2])
    assert gray.shape == (6, 8, 3) and (gray == picture[..., 1:2]).all()
    mask = as_rgb_uint8(np.eye(3, dtype=bool))
    assert mask.dtype == np.uint8 and mask[0, 0].tolist() == [255] * 3 and mask[0, 1].tolist() == [0] * 3


def test_plots_see_the_same_pixels_as_floats():
    picture = np.random.default_rng(2).integers(0, 256, (4, 5, 3), dtype=np.uint8)
    for form in (picture, torch.from_numpy(picture), picture / 255.0):
        rgb = image_rgb(form, "image")
        assert rgb.dtype == np.float64
        np.testing.assert_allclose(rgb, picture / 255.0)


@pytest.mark.parametrize(
    "image, error, match",
    [
        (
            np.zeros((3, 30, 40)),
            ValueError,
            r"image looks channel-first, shape \(3, 30, 40\).*permute\(1, 2, 0",
        ),
        (np.zeros((30, 40, 2)), ValueError, r"must be \(height, width, 3\) RGB.*not shape \(30, 40, 2\)"),
        (np.zeros((2, 3, 4, 3)), ValueError, r"not shape \(2, 3, 4, 3\)"),
        (np.zeros((0, 40, 3)), ValueError, r"image is empty: shape \(0, 40, 3\)"),
        (np.full((2, 2), np.nan), ValueError, "image holds NaN or infinite values"),
        (
            np.full((2, 2), -0.5),
            ValueError,
            r"float image must lie in \[0, 1\]; got values from -0.5 to -0.5",
        ),
        (
            np.full((2, 2), 256, np.int16),
            ValueError,
            "integer image must lie in 0..255; got values from 256 to",
        ),
        (np.full((2, 2), -1), ValueError, "from -1 to -1"),
        ("cat.png", TypeError, "image must be a numpy array or a torch tensor, not str"),
    ],
)
def test_bad_images_are_refused_with_the_cause(image, error, match):
    with pytest.raises(error, match=match):
        as_rgb_uint8(image)
