"""Tiny random models, a character tokenizer and reference measures for the survey tests.

The reference maps come from the models themselves, not from the capture: timm's attention
with ``fused_attn = False`` (the softmax read by a hook on ``attn_drop``) and BERT's eager
``output_attentions``. The reference measures are written out here in numpy, row by row.
"""

from __future__ import annotations

import copy

import numpy as np
import torch


def tiny_vit(depth: int = 2, seed: int = 0):
    import timm

    torch.manual_seed(seed)
    return timm.create_model(
        "vit_tiny_patch16_224",
        pretrained=False,
        num_classes=0,
        img_size=32,
        patch_size=8,
        depth=depth,
        num_heads=3,
        embed_dim=48,
    ).eval()


def tiny_bert(seed: int = 0):
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64
    )
    return BertModel(config).eval()


def images(count: int, seed: int = 1) -> list:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(3, 32, 32, generator=generator) for _ in range(count)]


TEXTS = [
    "the cat sat",
    "a dog",
    "birds fly south in winter",
    "x",
    "rain again today, said the forecast",
    "hello there",
    "one more line of text",
]


class CharTokenizer:
    """Characters as token ids after a [CLS]-like 1, padded with 0 to the longest (picklable)."""

    def __call__(self, texts, padding=True, truncation=True, max_length=512, return_tensors="pt"):
        ids = [[1] + [3 + ord(c) % 90 for c in text][: max_length - 1] for text in texts]
        n = max(map(len, ids))
        return {
            "input_ids": torch.tensor([i + [0] * (n - len(i)) for i in ids]),
            "attention_mask": torch.tensor([[1] * len(i) + [0] * (n - len(i)) for i in ids]),
        }


def vit_reference_maps(model, pixels: torch.Tensor) -> list[np.ndarray]:
    """(batch, heads, T, T) per block, from timm's own unfused softmax."""
    twin = copy.deepcopy(model)
    found = []
    hooks = []
    for block in twin.blocks:
        block.attn.fused_attn = False
        hooks.append(block.attn.attn_drop.register_forward_hook(lambda m, i, o: found.append(i[0].numpy())))
    with torch.no_grad():
        twin(pixels)
    for hook in hooks:
        hook.remove()
    return [a.astype(np.float64) for a in found]


def bert_reference_maps(model, encoded) -> list[np.ndarray]:
    twin = copy.deepcopy(model)
    twin.set_attn_implementation("eager")
    with torch.no_grad():
        out = twin(**encoded, output_attentions=True)
    return [a.numpy().astype(np.float64) for a in out.attentions]


def row_values(a: np.ndarray, measure: str, grid=None, prefix: int = 1, patch: float = 1.0):
    """(values, valid) per (batch, head, query) of one (batch, heads, T, T) map, written out row by row."""
    batch, heads, queries, keys = a.shape
    values = np.zeros((batch, heads, queries))
    valid = np.ones((batch, heads, queries), dtype=bool)
    for b in range(batch):
        for h in range(heads):
            for q in range(queries):
                row = a[b, h, q]
                if measure == "entropy":
                    values[b, h, q] = -sum(p * np.log(p) for p in row if p > 0)
                elif measure == "sink":
                    values[b, h, q] = row[0]
                elif measure == "self":
                    values[b, h, q] = row[q]
                elif measure == "previous":
                    values[b, h, q] = row[q - 1] if q > 0 else 0.0
                    valid[b, h, q] = q > 0
                elif measure == "distance":
                    if q < prefix:
                        valid[b, h, q] = False
                        continue
                    rows, cols = grid
                    qr, qc = divmod(q - prefix, cols)
                    weights = row[prefix:] / row[prefix:].sum()
                    d = [np.hypot(qr - k // cols, qc - k % cols) * patch for k in range(rows * cols)]
                    values[b, h, q] = float(np.dot(weights, d))
    return values, valid


def reference_stats(values: np.ndarray, valid: np.ndarray):
    """(mean, std, count) per head of one layer's (batch, heads, queries) values."""
    heads = values.shape[1]
    picked = [values[:, h][valid[:, h]] for h in range(heads)]
    return (
        np.array([p.mean() for p in picked]),
        np.array([p.std() for p in picked]),
        np.array([p.size for p in picked]),
    )


class TorchViT(torch.nn.Module):
    """A ViT in plain torch (no timm): 8-pixel patches of a 32 x 32 image, a CLS token, 2 layers."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.embed = torch.nn.Conv2d(3, 16, 8, stride=8)
        self.cls = torch.nn.Parameter(torch.randn(1, 1, 16))
        layer = torch.nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True)
        self.encoder = torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)

    def forward(self, pixels):
        tokens = self.embed(pixels).flatten(2).transpose(1, 2)
        return self.encoder(torch.cat([self.cls.expand(len(tokens), -1, -1), tokens], dim=1))


class TorchText(torch.nn.Module):
    """A text encoder in plain torch: embeddings, 2 layers, the padding masked out of the keys."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.embed = torch.nn.Embedding(100, 16)
        layer = torch.nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True)
        self.encoder = torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)

    def forward(self, input_ids, attention_mask):
        return self.encoder(self.embed(input_ids), src_key_padding_mask=attention_mask == 0)
