"""Sample images, and turning an image into a ViT input with a display copy that matches it.

>>> images = sample_images()                   # {'grace_hopper': (600, 512, 3) uint8, 'chelsea': ...}
>>> x, shown = prepare_image(images["chelsea"])
>>> x.shape, shown.shape                        # (batch, channels, height, width), (height, width, rgb)
(torch.Size([1, 3, 224, 224]), (224, 224, 3))
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "SAMPLE_IMAGES", "prepare_image", "sample_images"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: The sample images, in the order :func:`sample_images` returns them, and where each comes from.
SAMPLE_IMAGES = {
    "grace_hopper": "matplotlib's sample data (grace_hopper.jpg); needs matplotlib",
    "chelsea": "scikit-image's skimage.data.chelsea(); needs scikit-image",
}


def _grace_hopper():
    import numpy as np
    from PIL import Image

    try:
        from matplotlib import cbook
    except ImportError as error:
        raise ImportError(
            "the 'grace_hopper' sample image ships with matplotlib, which is not installed. "
            "Fix: pip install matplotlib, or ask only for the other samples: sample_images('chelsea')"
        ) from error
    with Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as image:
        return np.array(image.convert("RGB"))


def _chelsea():
    try:
        from skimage import data
    except ImportError as error:
        raise ImportError(
            "the 'chelsea' sample image ships with scikit-image, which is not installed. "
            "Fix: pip install scikit-image, or ask only for the other samples: sample_images('grace_hopper')"
        ) from error
    return data.chelsea()


_LOADERS = {"grace_hopper": _grace_hopper, "chelsea": _chelsea}


def sample_images(names: str | tuple[str, ...] | list[str] | None = None) -> OrderedDict:
    """Real photographs to look at attention on, as an ordered dict name -> RGB uint8 (height, width, 3).

        >>> sample_images()["grace_hopper"].shape
        (600, 512, 3)
        >>> list(sample_images("chelsea"))
        ['chelsea']

    ``names``: one name, a sequence of names, or None for all of :data:`SAMPLE_IMAGES`
    (``"grace_hopper"``, Hopper's portrait from matplotlib's sample data, and
    ``"chelsea"``, a cat's face from scikit-image). Each image needs only its own
    package: asking for chelsea without scikit-image installed raises an ImportError that
    says so, and grace_hopper alone still works.
    """
    if names is None:
        names = tuple(SAMPLE_IMAGES)
    elif isinstance(names, str):
        names = (names,)
    elif not isinstance(names, (tuple, list)) or not all(isinstance(name, str) for name in names):
        raise TypeError(f"names must be a str, a list or tuple of str, or None; got {names!r}")
    unknown = [name for name in names if name not in SAMPLE_IMAGES]
    if unknown:
        raise ValueError(f"unknown sample image {unknown[0]!r}; the sample images are {list(SAMPLE_IMAGES)}")
    return OrderedDict((name, _LOADERS[name]()) for name in names)


def _as_rgb_array(image):
    """``image`` (path, PIL image or array) as an RGB uint8 numpy array (height, width, 3)."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    if isinstance(image, (str, os.PathLike)):
        path = Path(image).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"no such file: {str(path)!r}")
        try:
            with Image.open(path) as opened:
                return np.array(opened.convert("RGB"))
        except (UnidentifiedImageError, OSError) as error:
            raise ValueError(f"{str(path)!r} is not an image file PIL can read: {error}") from error
    if isinstance(image, Image.Image):
        return np.array(image.convert("RGB"))
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            hint = (
                " Fix for a float image in [0, 1]: (np.clip(image, 0, 1) * 255).round().astype(np.uint8)"
                if image.dtype.kind == "f"
                else ""
            )
            raise TypeError(f"image array must have dtype uint8, got {image.dtype}.{hint}")
        if image.ndim == 2:  # greyscale: the model wants three channels
            image = np.repeat(image[:, :, None], 3, axis=2)
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(
                f"image array must have shape (height, width, 3) (RGB) or (height, width) (greyscale), "
                f"got {image.shape}"
            )
        if image.shape[0] == 0 or image.shape[1] == 0:
            raise ValueError(f"image array is empty: shape {image.shape}")
        return image
    raise TypeError(
        f"image must be a file path (str or pathlib.Path), a PIL.Image.Image or a uint8 numpy array "
        f"(height, width, 3); got {type(image).__name__}"
    )


def prepare_image(image, size: int = 224):
    """An image as a normalised ViT input, plus the exact pixels the model sees.

        >>> x, shown = prepare_image("photo.jpg")
        >>> x.shape                  # (batch, channels, size, size), float32, ImageNet-normalised
        torch.Size([1, 3, 224, 224])
        >>> shown.shape, shown.dtype # (size, size, 3) uint8: draw attention over this
        ((224, 224, 3), dtype('uint8'))

    ``image``: a path (str or Path), a PIL image or an RGB uint8 numpy array
    (height, width, 3); a greyscale (height, width) array or image is made RGB.
    ``size``: the side of the square input, in pixels.

    The largest centred square is cut out and resized (bicubic, antialiased by PIL) to
    ``size`` x ``size``. Cropping rather than squashing keeps shapes undistorted, and
    the centre is where photographs put their subject: in the samples, the crop keeps the
    cat's eyes and nose (chelsea, 451 x 300: 75 px cut from each side) and Hopper's whole
    face and cap (grace_hopper, 512 x 600: 44 px cut from top and bottom). The tensor is
    computed from the returned uint8 pixels, so an attention grid laid over ``shown`` is
    aligned with what the model saw, pixel for pixel.
    """
    import numpy as np
    import torch
    from PIL import Image

    if isinstance(size, bool) or not isinstance(size, int):
        raise TypeError(f"size must be an int (pixels), got {type(size).__name__}")
    if size <= 0:
        raise ValueError(f"size must be a positive number of pixels, got {size}")
    pixels = _as_rgb_array(image)
    height, width = pixels.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = np.ascontiguousarray(pixels[top : top + side, left : left + side])
    shown = np.array(Image.fromarray(square).resize((size, size), Image.Resampling.BICUBIC))
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    tensor = (torch.from_numpy(shown).permute(2, 0, 1).float() / 255 - mean) / std
    return tensor.unsqueeze(0).contiguous(), shown
