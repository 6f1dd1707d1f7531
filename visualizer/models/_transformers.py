"""Load a transformers model and its tokenizer from a folder or a cached hub name, in eval mode.

>>> model, tokenizer = load_pretrained("bert-base-uncased", True, {}, auto="AutoModel", caller="load_bert()")

Shared by :func:`~visualizer.models.load_bert` and :func:`~visualizer.models.load_causal_lm`:
the same option handling, the same errors, no progress bars.
"""

from __future__ import annotations

import contextlib

from visualizer.models._hub import is_cache_miss
from visualizer.models._packages import WeightsError

__all__ = ["load_pretrained", "no_progress_bar"]


def load_pretrained(
    source, pretrained: bool, kwargs: dict, *, auto: str, caller: str, model_class=None, on_error=None
):
    """``(model.eval(), tokenizer)`` from ``source`` with ``transformers.<auto>``.

    ``pretrained=False`` builds the architecture from the config with random weights.
    ``model_class``: a class to load pretrained weights with instead of ``auto`` (the embedded
    weights' own).
    ``kwargs["local_files_only"]`` governs every read; the other options are the model's.
    A cache miss under ``local_files_only`` propagates (``cache_first`` decides what follows);
    any other OSError becomes ``on_error(error)`` if given, else a :class:`WeightsError` naming
    ``caller``'s offline choices.
    """
    import transformers
    from transformers import AutoConfig, AutoTokenizer

    local = {"local_files_only": kwargs["local_files_only"]} if "local_files_only" in kwargs else {}
    options = {key: value for key, value in kwargs.items() if key != "local_files_only"}
    auto_class = getattr(transformers, auto)
    try:
        with no_progress_bar():
            if pretrained:
                model = (model_class or auto_class).from_pretrained(source, **local, **options)
            else:
                model = auto_class.from_config(AutoConfig.from_pretrained(source, **local), **options)
            tokenizer = AutoTokenizer.from_pretrained(source, **local)
    except OSError as error:
        if local.get("local_files_only") and is_cache_miss(error):
            raise
        if on_error is not None:
            raise on_error(error) from error
        raise WeightsError(
            f"could not load {source!r}: {type(error).__name__}: {str(error).rstrip('.')}. No model hub "
            f"may be reachable from here, or the name or folder is wrong. Fix: pass a local folder saved "
            f"with save_pretrained(), or call {caller} as its docstring shows for offline weights."
        ) from error
    return model.eval(), tokenizer


@contextlib.contextmanager
def no_progress_bar():
    """transformers 5 draws a "Loading weights" bar for each load: noise in notebooks and the CLI."""
    from transformers.utils import logging

    enabled = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            logging.enable_progress_bar()
