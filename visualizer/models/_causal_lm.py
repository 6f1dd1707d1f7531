"""``load_causal_lm``: a transformers causal language model and its tokenizer, from a folder or the hub cache.

>>> model, tokenizer = load_causal_lm("/path/saved/with/save_pretrained")   # a local folder
>>> model, tokenizer = load_causal_lm("gpt2")                               # a hub id you have cached
>>> model, tokenizer = load_causal_lm("gpt2", pretrained=False)             # its config, random weights

The model comes from ``AutoModelForCausalLM`` in eval mode, with the sdpa attention kernel
unless ``attn_implementation=`` says otherwise, so that ``capture_attention`` keeps it. The
offline demo of this kind is :func:`visualizer.demos.load_induction_demo`.
"""

from __future__ import annotations

from pathlib import Path

from visualizer.models._hub import (
    OFFLINE_HOWTO,
    cache_first,
    hub_cache,
    hub_offline_requested,
    is_local_path,
    missing_folder,
)
from visualizer.models._packages import WeightsError, require_frameworks
from visualizer.models._transformers import load_pretrained

__all__ = ["load_causal_lm"]

_CALLER = "load_causal_lm()"


def load_causal_lm(name: str | Path, *, pretrained: bool = True, **kwargs):
    """``(model, tokenizer)`` for a causal LM: a hub id (read from the local cache first) or a folder.

    ``pretrained=False`` builds the architecture from its config with random weights (the config
    and tokenizer are still read from ``name``). ``kwargs`` go to ``from_pretrained`` /
    ``from_config``. A hub name that is not cached gets one short request; without a hub a
    :class:`WeightsError` says how to work offline (``HF_HUB_OFFLINE=1`` or
    ``local_files_only=True`` keeps the hub out altogether).
    """
    if isinstance(name, bool) or not isinstance(name, (str, Path)):
        raise TypeError(f"name must be a model name or folder (str or Path), got {name!r}")
    if not str(name).strip():
        raise ValueError("name is empty: give a transformers causal LM name or a local folder")
    if not isinstance(pretrained, bool):
        raise TypeError(f"pretrained must be True or False, got {pretrained!r}")
    require_frameworks(_CALLER, ("torch", "transformers"))
    kwargs.setdefault("attn_implementation", "sdpa")
    if is_local_path(name):
        return _load(str(name), pretrained, kwargs)
    not_a_folder = missing_folder(name, _CALLER)
    if not_a_folder:
        raise not_a_folder
    options = {key: value for key, value in kwargs.items() if key != "local_files_only"}
    return cache_first(
        lambda local: _load(str(name), pretrained, {**options, "local_files_only": local}),
        offline=hub_offline_requested(kwargs),
        not_cached=lambda reason: WeightsError(
            f"could not load {str(name)!r}: it is not in the local Hugging Face cache ({hub_cache()}), and "
            f"{reason}. Offline, {_CALLER} takes a local folder saved with save_pretrained(), "
            f"{OFFLINE_HOWTO} "
            "The offline causal LM demo is visualizer.demos.load_induction_demo()."
        ),
        refresh=bool(kwargs.get("force_download")),
    )


def _load(source: str, pretrained: bool, kwargs: dict):
    try:
        return load_pretrained(source, pretrained, kwargs, auto="AutoModelForCausalLM", caller=_CALLER)
    except (
        ValueError
    ) as error:  # transformers: "Unrecognized configuration class ... for AutoModelForCausalLM"
        if "AutoModelForCausalLM" not in str(error):
            raise
        raise WeightsError(
            f"{source!r} is not a causal language model (AutoModelForCausalLM has no class for its "
            f"config): {str(error).splitlines()[0]}. Give a decoder-only model such as GPT-2 or Llama."
        ) from None
