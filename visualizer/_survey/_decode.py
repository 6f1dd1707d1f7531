"""Turning a list of inputs into one model batch (run in DataLoader workers: picklable, no state).

>>> ImageBatcher(size=224)(["a.jpg", "broken.png"])   # Batch((1, 3, 224, 224), 1, skipped=[...])
>>> TextBatcher(tokenizer, max_length=128)(["A cat.", "Two dogs ran."])

Images: a path (any format PIL reads), a PIL image, an RGB uint8 array (height, width, 3),
or a prepared (channels, height, width) tensor; each is made an input by ``transform`` (a
callable: PIL image -> (channels, height, width) tensor) or else by
:func:`visualizer.models.prepare_image` (a centred square, ``size`` pixels, ImageNet-normalised).
A file that cannot be opened or decoded is skipped and named in ``Batch.skipped``.
Texts: tokenised together, padded to the longest, truncated to ``max_length`` tokens; the
attention mask says which queries are real.
"""

from __future__ import annotations

import os

from visualizer._survey._inputs import Batch

__all__ = ["ImageBatcher", "TextBatcher"]


class ImageBatcher:
    """Images -> one (batch, channels, height, width) tensor; unreadable files skipped."""

    def __init__(self, size: int = 224, transform=None) -> None:
        self.size, self.transform = size, transform

    def __call__(self, items: list) -> Batch:
        import torch

        tensors, skipped = [], []
        for item in items:
            try:
                tensors.append(self._one(item))
            except Exception as exc:  # PIL raises about anything on a broken file
                if not isinstance(item, (str, os.PathLike)):
                    raise
                reason = (str(exc).splitlines() or [""])[0] or type(exc).__name__
                skipped.append((str(item), f"{type(exc).__name__}: {reason}"))
        if not tensors:
            return Batch(None, 0, None, skipped)
        shapes = {tuple(t.shape) for t in tensors}
        if len(shapes) > 1:
            raise ValueError(
                f"survey(): the images of one batch came out in different shapes {sorted(shapes)}; "
                "give a transform that makes every image the same size"
            )
        return Batch(torch.stack(tensors), len(tensors), None, skipped)

    def _one(self, item):
        import torch

        if isinstance(item, torch.Tensor):
            if item.ndim != 3:
                raise ValueError(
                    "survey(): an image tensor must be (channels, height, width), "
                    f"not shape {tuple(item.shape)}"
                )
            return item
        if self.transform is not None:
            from PIL import Image

            if isinstance(item, (str, os.PathLike)):
                with Image.open(item) as opened:
                    image = opened.convert("RGB")
            elif isinstance(item, Image.Image):
                image = item.convert("RGB")
            else:
                image = Image.fromarray(item).convert("RGB")
            return self.transform(image)
        from visualizer.models import prepare_image

        return prepare_image(item, size=self.size)[0][0]


class TextBatcher:
    """Texts -> the tokenizer's padded batch; ``Batch.queries_valid`` is its attention mask."""

    def __init__(self, tokenizer, max_length: int = 512) -> None:
        self.tokenizer, self.max_length = tokenizer, max_length

    def __call__(self, items: list) -> Batch:
        for item in items:
            if not isinstance(item, str):
                raise TypeError(f"survey(): a text input must be a str, not {type(item).__name__}")
        encoded = self.tokenizer(
            list(items), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        inputs = dict(encoded)
        return Batch(inputs, len(items), inputs.get("attention_mask"))
