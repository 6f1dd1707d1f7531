"""The user cache of the trained demos: one safetensors file per settings, checked when read back.

>>> cache = DemoCache("induction", "induction-gpt2", "2", "transformers",
...                   "transformers GPT2LMHeadModel state_dict", _untrained, InductionDemo)
>>> cache.path(InductionSettings()).name        # a hash of the settings, the trainer version
'induction-gpt2-...-t2.safetensors'
>>> demo = cache.load(settings, lambda: train_induction(**dataclasses.asdict(settings)))  # or trained

A file holds the model's ``state_dict`` and, in its metadata, the settings (as sorted JSON),
the versions of torch, of the framework that builds the model (transformers, timm) and of
the trainer, the sha256 of its tensors (:func:`visualizer.models._cache.content_sha256`) and
the training record (losses, seconds, threads). :meth:`DemoCache.read` gives a reason for
every file it will not use: one that cannot be read, whose settings or versions differ,
whose tensors no longer match the hash, or that does not hold the model's parameters.
:meth:`DemoCache.load` then trains again and replaces the file, with a ``CaptureWarning``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import numpy as np
import torch

__all__ = ["DemoCache", "TrainedDemo"]


class TrainedDemo(Protocol):
    """What a demo holds and its cache file keeps: ``InductionDemo``, ``KeywordDemo``, ``ShapesDemo``."""

    model: Any
    losses: list[float]
    seconds: float
    threads: int
    path: Path | None


Demo = TypeVar("Demo", bound=TrainedDemo)


@dataclasses.dataclass(frozen=True)
class DemoCache(Generic[Demo]):
    """The cache files of one demo.

    - ``name``: the demo in warnings ("the cached ``name`` demo ...").
    - ``prefix``, ``trainer_version``: the file is ``{prefix}-{hash of the settings}-t{trainer_version}``;
      the trainer version is recorded too, so a bump retrains.
    - ``framework``: the module that builds the model, whose ``__version__`` is recorded with torch's.
    - ``model``: the metadata's description of the tensors.
    - ``untrained(settings)``: the model, freshly initialised, to load the tensors into.
    - ``demo(model, settings, losses, seconds, threads, path)``: the demo of a good file.
    - ``parameters``: what a file must hold, in the reason for one that does not.
    """

    name: str
    prefix: str
    trainer_version: str
    framework: str
    model: str
    untrained: Callable[[Any], torch.nn.Module]
    demo: Callable[..., Demo]
    parameters: str = "float32 parameters"

    def versions(self) -> dict[str, str]:
        """``{"torch", framework, "trainer"}``: the versions a file must have been trained with."""
        framework = importlib.import_module(self.framework)
        return {
            "torch": torch.__version__,
            self.framework: framework.__version__,
            "trainer": self.trainer_version,
        }

    def path(self, settings) -> Path:
        """Where the weights trained with ``settings`` are cached (named after a hash of the settings)."""
        from visualizer.models._cache import cache_dir

        key = hashlib.sha256(_settings_json(settings).encode()).hexdigest()[:16]
        return cache_dir() / f"{self.prefix}-{key}-t{self.trainer_version}.safetensors"

    def read(self, path: Path, settings) -> tuple[Demo | None, str | None]:
        """``(demo, None)`` for a good cache file; ``(None, why)`` for one to train again; ``(None, None)``
        when there is no file yet."""
        from visualizer.models._cache import content_sha256, read_arrays

        if not path.is_file():
            return None, None
        try:
            arrays, metadata = read_arrays(path)
        except Exception as error:  # safetensors raises several types for a damaged file: train again
            return None, f"could not be read ({type(error).__name__}: {error})"
        if metadata.get("settings") != _settings_json(settings):
            return None, f"was trained with other settings ({metadata.get('settings')})"
        for name, version in self.versions().items():
            if metadata.get(name) != version:
                return None, f"was trained with {name} {metadata.get(name)}, not {version}"
        stored = metadata.get("content_sha256")
        if not stored:
            return None, "has no content hash"
        found = content_sha256(arrays)
        if found != stored:
            return None, (
                f"holds tensors whose sha256 {found[:16]}... differs from the {stored[:16]}... recorded when "
                f"it was trained: the file was changed after it was written"
            )
        model = self.untrained(settings)
        expected = {
            name: (tuple(value.shape), value.numpy().dtype) for name, value in model.state_dict().items()
        }
        held = {name: (tuple(array.shape), array.dtype) for name, array in arrays.items()}
        if held != expected or not all(np.isfinite(array).all() for array in arrays.values()):
            return None, f"does not hold this model's {self.parameters}"
        try:
            losses, seconds = json.loads(metadata["losses"]), float(metadata["seconds"])
            trained_threads = int(metadata["threads"])
        except (KeyError, ValueError) as error:
            return None, f"has unreadable training metadata ({type(error).__name__}: {error})"
        model.load_state_dict({name: torch.from_numpy(array) for name, array in arrays.items()})
        model.eval()
        return self.demo(model, settings, losses, seconds, trained_threads, path), None

    def load(self, settings, train: Callable[[], Demo]) -> Demo:
        """The demo of the cache file for ``settings``, or ``train()``'s, then written to that file.

        A file that cannot be used is trained again and replaced, with a ``CaptureWarning``; a
        cache folder that cannot be written warns and still returns the trained demo. The
        warnings point at the caller of the demo's ``load_*_demo``, which calls this.
        """
        from visualizer._errors import CaptureWarning
        from visualizer.models._cache import content_sha256, write_arrays

        path = self.path(settings)
        demo, problem = self.read(path, settings)
        if demo is not None:
            return demo
        if problem:
            warnings.warn(
                f"the cached {self.name} demo {path} {problem}; it is trained again and the file is "
                "replaced.",
                CaptureWarning,
                stacklevel=3,
            )
        demo = train()
        state = demo.model.state_dict()
        arrays = {name: value.detach().cpu().numpy().copy() for name, value in state.items()}
        metadata = {
            "settings": _settings_json(settings),
            **self.versions(),
            "content_sha256": content_sha256(arrays),
            "losses": json.dumps(demo.losses),
            "seconds": repr(demo.seconds),
            "threads": str(demo.threads),
            "model": self.model,
        }
        try:
            write_arrays(path, arrays, metadata)
            demo.path = path
        except OSError as error:
            warnings.warn(
                f"could not cache the {self.name} demo at {path} ({error}); it will be trained again next "
                f"time. Fix: set the environment variable VISUALIZER_CACHE to a writable folder.",
                CaptureWarning,
                stacklevel=3,
            )
        return demo


def _settings_json(settings) -> str:
    return json.dumps(dataclasses.asdict(settings), sort_keys=True)
