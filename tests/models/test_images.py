"""sample_images and prepare_image: the pixels, their alignment with the tensor, and every bad input."""

import sys

import numpy as np
import pytest
import torch
from PIL import Image

from visualizer.models import prepare_image, sample_images
from visualizer.models._images import IMAGENET_MEAN, IMAGENET_STD


@pytest.fixture(scope="module")
def samples():
    return sample_images()


def test_sample_images_are_ordered_rgb_uint8_photographs(samples):
    assert list(samples) == ["grace_hopper", "chelsea"]
    assert samples["grace_hopper"].shape == (600, 512, 3)
    assert samples["chelsea"].shape == (300, 451, 3)
    for image in samples.values():
        assert image.dtype == np.uint8
        assert image.std() > 20  # a photograph, not a blank


def test_sample_images_by_name():
    assert list(sample_images("chelsea")) == ["chelsea"]
    assert list(sample_images(["chelsea", "grace_hopper"])) == ["chelsea", "grace_hopper"]


def test_sample_images_rejects_unknown_names_and_types():
    with pytest.raises(ValueError, match=r"unknown sample image 'astronaut'.*grace_hopper.*chelsea"):
        sample_images("astronaut")
    with pytest.raises(TypeError, match="names must be"):
        sample_images(3)


def test_chelsea_without_scikit_image_says_how_to_get_it_and_hopper_still_works(monkeypatch):
    monkeypatch.setitem(sys.modules, "skimage", None)  # makes `from skimage import data` fail
    with pytest.raises(ImportError, match="pip install scikit-image"):
        sample_images("chelsea")
    with pytest.raises(ImportError, match="scikit-image"):
        sample_images()
    assert sample_images("grace_hopper")["grace_hopper"].shape == (600, 512, 3)


def test_prepare_image_tensor_is_the_normalised_display_image(samples):
    tensor, shown = prepare_image(samples["chelsea"])
    assert tensor.shape == (1, 3, 224, 224) and tensor.dtype == torch.float32
    assert shown.shape == (224, 224, 3) and shown.dtype == np.uint8
    mean, std = np.array(IMAGENET_MEAN), np.array(IMAGENET_STD)
    undone = tensor[0].permute(1, 2, 0).numpy() * std + mean
    np.testing.assert_allclose(undone * 255, shown, atol=1e-3)


def test_prepare_image_size(samples):
    tensor, shown = prepare_image(samples["grace_hopper"], size=98)
    assert tensor.shape == (1, 3, 98, 98) and shown.shape == (98, 98, 3)


def test_prepare_image_crops_the_centre_without_distortion():
    # A landscape image: red left band, a green centre square, blue right band.
    image = np.zeros((100, 200, 3), np.uint8)
    image[:, :50, 0] = 255
    image[:, 50:150, 1] = 255
    image[:, 150:, 2] = 255
    _, shown = prepare_image(image, size=50)
    assert (shown[:, :, 1] > 250).all() and (shown[:, :, [0, 2]] < 5).all()
    # A portrait image: the centre row band lands in the centre of the crop.
    portrait = np.zeros((300, 100, 3), np.uint8)
    portrait[140:160] = 255
    _, shown = prepare_image(portrait, size=100)
    bright = np.flatnonzero(shown[:, 50, 0] > 128)
    assert bright.min() >= 38 and bright.max() <= 61 and abs(bright.mean() - 49.5) < 1


def test_prepare_image_accepts_paths_pil_images_and_arrays_alike(tmp_path, samples):
    image = samples["grace_hopper"]
    path = tmp_path / "hopper.png"
    Image.fromarray(image).save(path)
    from_array = prepare_image(image)
    for source in (path, str(path), Image.fromarray(image)):
        tensor, shown = prepare_image(source)
        assert torch.equal(tensor, from_array[0]) and np.array_equal(shown, from_array[1])


def test_prepare_image_makes_greyscale_rgb(tmp_path):
    grey = np.tile(np.arange(64, dtype=np.uint8) * 4, (64, 1))
    _, from_array = prepare_image(grey, size=32)
    _, from_pil = prepare_image(Image.fromarray(grey), size=32)
    assert np.array_equal(from_array, from_pil)
    assert np.array_equal(from_array[..., 0], from_array[..., 2])


def test_prepare_image_errors_name_the_cause(tmp_path):
    missing = tmp_path / "nope.jpg"
    with pytest.raises(FileNotFoundError, match="no such file: .*nope.jpg"):
        prepare_image(missing)
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    with pytest.raises(ValueError, match="notes.jpg' is not an image file PIL can read"):
        prepare_image(str(text))
    with pytest.raises(FileNotFoundError, match="no such file"):
        prepare_image(tmp_path)  # a folder is not an image file
    with pytest.raises(TypeError, match=r"dtype uint8, got float64.*np.clip"):
        prepare_image(np.zeros((8, 8, 3)))
    with pytest.raises(ValueError, match=r"shape \(height, width, 3\).*got \(8, 8, 4\)"):
        prepare_image(np.zeros((8, 8, 4), np.uint8))
    with pytest.raises(ValueError, match="got \\(3, 8, 8, 1\\)"):
        prepare_image(np.zeros((3, 8, 8, 1), np.uint8))
    with pytest.raises(ValueError, match="empty"):
        prepare_image(np.zeros((0, 8, 3), np.uint8))
    with pytest.raises(TypeError, match="image must be a file path .*got Tensor"):
        prepare_image(torch.zeros(8, 8, 3))
    with pytest.raises(TypeError, match="size must be an int"):
        prepare_image(np.zeros((8, 8, 3), np.uint8), size=22.5)
    with pytest.raises(ValueError, match="size must be a positive"):
        prepare_image(np.zeros((8, 8, 3), np.uint8), size=0)
