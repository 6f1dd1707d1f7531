"""Where a captured model cuts images into patches: the patch grid of each call, read from what ran.

>>> grids = PatchGrids(model, ["blocks.0.attn", "blocks.1.attn"])
>>> detach = grids.attach()              # hooks on the patchifying convolutions
>>> model(images)                        # 224 x 224 images, patch 16
>>> grids.layout("blocks.0.attn", keys=197)
Tokens(prefix=1, grid=(14, 14))
>>> detach()

A vision transformer embeds its patches with a convolution whose kernel equals its stride
(timm's ``PatchEmbed.proj``, transformers' ``patch_embeddings.projection`` and CLIP's and
SigLIP's ``patch_embedding``, a hand-written ViT's ``nn.Conv2d(3, d, p, stride=p)``): its
output is (batch, channels, rows, cols), so each call says the grid of that input, whatever
the image size, padding or position-embedding interpolation. The keys of an attention call
that runs afterwards are then ``prefix`` tokens (class, registers, distillation) and the
``rows x cols`` patches; ``prefix`` is what is left of the keys, from 0 to
:data:`MAX_PREFIX`. Keys that do not fit (a hierarchical stage, a text tower, patches
dropped in training) get no grid.

A convolution serves the attention modules of its **tower**: its nearest ancestor that holds
a captured attention module (a ViT: the model; CLIP: the vision model, so that the text
tower's layers get no grid). Its grid lasts until the tower's forward returns, per thread.
"""

from __future__ import annotations

import threading
from typing import Any

from visualizer._structure import Tokens

__all__ = ["MAX_PREFIX", "PatchGrids"]

#: The most tokens before the patches that a call's keys may hold (class, distillation and up
#: to 16 or more register tokens); more left-over keys mean the keys are not this grid's patches.
MAX_PREFIX = 32


def _is_patchifier(module: Any) -> bool:
    """A 2-D convolution that cuts its input into non-overlapping patches."""
    import torch

    if not isinstance(module, torch.nn.Conv2d):
        return False
    kernel, stride = tuple(module.kernel_size), tuple(module.stride)
    padding = module.padding if isinstance(module.padding, str) else tuple(module.padding)
    return (
        kernel == stride
        and max(kernel) > 1
        and padding in ((0, 0), "valid")
        and tuple(module.dilation) == (1, 1)
        and module.groups == 1
    )


def _within(path: str, ancestor: str) -> bool:
    return ancestor == "" or path == ancestor or path.startswith(ancestor + ".")


class PatchGrids:
    """The patch grids a model's patchifying convolutions produce, per call and per thread."""

    def __init__(self, model: Any, paths: list[str]) -> None:
        self.model = model
        modules = dict(model.named_modules())
        self._towers: dict[str, str] = {}  # conv path -> tower path
        for name, module in modules.items():
            if not _is_patchifier(module):
                continue
            parts = name.split(".")
            ancestors = [".".join(parts[:end]) for end in range(len(parts) - 1, -1, -1)]  # nearest first
            tower = next((a for a in ancestors if any(_within(path, a) for path in paths)), None)
            if tower is not None:
                self._towers[name] = tower
        self._modules = modules
        self._local = threading.local()

    def __bool__(self) -> bool:
        return bool(self._towers)

    def attach(self, accept=lambda: True):
        """Hook the convolutions and their towers; returns a function that removes the hooks.
        ``accept()`` says whether the running thread's calls count (a capture's threads rule)."""
        handles = []
        for name, tower in self._towers.items():
            handles.append(self._modules[name].register_forward_hook(self._saw(tower, accept)))
        for tower in set(self._towers.values()):
            handles.append(self._modules[tower].register_forward_hook(self._left(tower), always_call=True))

        def detach() -> None:
            for handle in handles:
                handle.remove()
            self._local = threading.local()

        return detach

    def _grids(self) -> dict[str, tuple[int, int]]:
        grids = getattr(self._local, "grids", None)
        if grids is None:
            grids = self._local.grids = {}
        return grids

    def _saw(self, tower: str, accept):
        def hook(module, args, output) -> None:
            if accept() and getattr(output, "dim", lambda: 0)() == 4:
                self._grids()[tower] = (int(output.shape[-2]), int(output.shape[-1]))

        return hook

    def _left(self, tower: str):
        def hook(module, args, output) -> None:
            self._grids().pop(tower, None)

        return hook

    def layout(self, path: str, keys: int) -> Tokens | None:
        """The geometry of a call of the attention at ``path`` with ``keys`` keys, or None where
        no patch grid of its tower fits them."""
        grids = self._grids()
        best = None
        for tower, (rows, cols) in grids.items():
            prefix = keys - rows * cols
            if (
                _within(path, tower)
                and 0 <= prefix <= MAX_PREFIX
                and (best is None or len(tower) > len(best[0]))
            ):
                best = (tower, Tokens(prefix=prefix, grid=(rows, cols)))
        return None if best is None else best[1]
