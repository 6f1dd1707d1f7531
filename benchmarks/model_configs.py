"""The model configurations of the end-to-end benchmark: a model, its inputs and the maps to expect.

    >>> config = build_config("vitb16-b8")
    >>> config.label
    'ViT-B/16 (timm, random weights), 224 px, batch 8'
    >>> config.map_shape, config.layers             # (batch, heads, queries, keys), per layer
    ((8, 12, 197, 197), 12)
    >>> config.model(**config.inputs).shape

Ids are ``<arch>-b<batch>`` for the ViTs and ``<arch>-<tokens>-b<batch>`` for the BERTs.
Models are built once per process and shared by the configs of both batch sizes.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable
from typing import Any

__all__ = ["ARCHS", "FULL_IDS", "MEMORY_IDS", "QUICK_IDS", "Config", "build_config"]

ARCHS = {
    "dinov2": "DINOv2 ViT-S/14 (timm, offline weights), 224 px",
    "vitb16": "ViT-B/16 (timm, random weights), 224 px",
    "minilm": "MiniLM-L6 (all-MiniLM-L6-v2, offline weights)",
    "bertbase": "BERT-base (BertConfig() defaults, random weights)",
}
FULL_IDS = [
    *(f"{arch}-b{batch}" for arch in ("dinov2", "vitb16") for batch in (1, 8)),
    *(
        f"{arch}-{tokens}-b{batch}"
        for arch in ("minilm", "bertbase")
        for tokens in (128, 512)
        for batch in (1, 8)
    ),
]
QUICK_IDS = ["dinov2-b1", "minilm-128-b1"]
# The largest configurations, whose peak memory is measured one variant per fresh process.
MEMORY_IDS = ["vitb16-b8", "bertbase-512-b8"]
_ID = re.compile(r"(?P<arch>[a-z0-9]+)(-(?P<tokens>\d+))?-b(?P<batch>\d+)")


@dataclasses.dataclass
class Config:
    """One model at one input size; ``model(**inputs)`` is the forward pass that is timed."""

    id: str
    label: str
    family: str  # "timm" or "bert": which variants apply
    model: Any
    inputs: dict
    layers: int
    map_shape: tuple  # of each layer's map: (batch, heads, queries, keys)
    # For the ViTs: () -> (transformers model in eager, its inputs, what it is) for output_attentions.
    peer: Callable | None = None


def build_config(config_id: str) -> Config:
    """The configuration ``config_id`` (one of ``FULL_IDS``), its model built or reused."""
    if config_id not in FULL_IDS:
        raise ValueError(f"unknown benchmark configuration {config_id!r}; known: {', '.join(FULL_IDS)}")
    match = _ID.fullmatch(config_id)
    arch, batch = match["arch"], int(match["batch"])
    if arch in ("dinov2", "vitb16"):
        return _vit_config(config_id, arch, batch)
    return _bert_config(config_id, arch, int(match["tokens"]), batch)


def _vit_config(config_id: str, arch: str, batch: int) -> Config:
    import torch

    model = _timm_model(arch)
    heads, tokens = model.blocks[0].attn.num_heads, model.patch_embed.num_patches + model.num_prefix_tokens
    images = torch.randn(batch, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    return Config(
        config_id,
        f"{ARCHS[arch]}, batch {batch}",
        "timm",
        model,
        {"x": images},
        len(model.blocks),
        (batch, heads, tokens, tokens),
        functools.partial(_vit_peer, arch, images),
    )


def _bert_config(config_id: str, arch: str, tokens: int, batch: int) -> Config:
    import torch

    model = _bert_model(arch)
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, model.config.vocab_size, (batch, tokens), generator=generator)
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    heads = model.config.num_attention_heads
    return Config(
        config_id,
        f"{ARCHS[arch]}, {tokens} tokens, batch {batch}",
        "bert",
        model,
        inputs,
        model.config.num_hidden_layers,
        (batch, heads, tokens, tokens),
    )


@functools.cache
def _timm_model(arch: str):
    import torch

    from visualizer.models import load_vit

    torch.manual_seed(0)
    return load_vit() if arch == "dinov2" else load_vit("vit_base_patch16_224", pretrained=False)


@functools.cache
def _bert_model(arch: str):
    import torch
    from transformers import BertConfig, BertModel

    from visualizer.models import load_bert

    torch.manual_seed(0)
    return load_bert()[0] if arch == "minilm" else BertModel(BertConfig()).eval()


def _vit_peer(arch: str, images):
    """transformers' own implementation of the architecture, in eager, for ``output_attentions``."""
    return _transformers_vit(arch), {"pixel_values": images}, _PEER_LABELS[arch]


_PEER_LABELS = {
    "dinov2": "another implementation: transformers Dinov2Model, same weights",
    "vitb16": "another implementation: transformers ViTModel, other random weights",
}


@functools.cache
def _transformers_vit(arch: str):
    import torch
    from transformers import ViTConfig, ViTModel

    from visualizer.models import load_vit

    if arch == "dinov2":
        return load_vit(library="transformers", attn_implementation="eager")
    torch.manual_seed(0)
    return ViTModel._from_config(ViTConfig(), attn_implementation="eager").eval()
