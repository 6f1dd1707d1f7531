"""Tiny random transformers models for the tests, built the same way everywhere.

>>> model = tiny_llama()                                  # LlamaForCausalLM, 2 layers, 4 heads, 2 key heads
>>> model = tiny_llama(hidden_size=32, num_hidden_layers=4, initializer_range=0.2)
>>> model = tiny_bert()                                   # BertModel, 2 layers, 4 heads, hidden size 32

Weights are drawn after ``torch.manual_seed(0)``, so the same arguments give the same model.
"""

from __future__ import annotations

import torch

__all__ = ["LLAMA_SIZES", "tiny_bert", "tiny_llama"]

#: The sizes every tiny Llama starts from: small, with grouped-query attention (4 heads, 2 key heads).
LLAMA_SIZES = {
    "vocab_size": 100,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
}


def tiny_llama(model_class: str = "LlamaForCausalLM", config_class: str = "LlamaConfig", **config):
    """A random ``transformers.<model_class>`` from ``<config_class>(**LLAMA_SIZES, **config)`` (a
    Llama by default; Qwen 3, Gemma 3 and the other Llama-shaped configs take the same sizes), in
    eval mode."""
    import transformers

    torch.manual_seed(0)
    configured = getattr(transformers, config_class)(**{**LLAMA_SIZES, **config})
    return getattr(transformers, model_class)(configured).eval()


def tiny_bert():
    """A random ``transformers.BertModel`` (vocabulary 100, hidden size 32, 2 layers, 4 heads), eval mode."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64
    )
    return BertModel(config).eval()


def tiny_swin():
    """A random timm Swin (56 px, two stages of one block: 2 then 4 heads, windows of 7), eval mode."""
    import timm

    torch.manual_seed(0)
    return timm.create_model(
        "swin_tiny_patch4_window7_224",
        pretrained=False,
        img_size=56,
        depths=(1, 1),
        num_heads=(2, 4),
        embed_dim=16,
        num_classes=5,
    ).eval()


def tiny_encoder():
    """A random ``nn.TransformerEncoder`` (width 16, 4 heads, 2 layers, batch first, no dropout), in eval."""
    torch.manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, batch_first=True)
    return torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=False).eval()
