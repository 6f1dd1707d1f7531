"""Independent reference computations of attention weights, written out by hand for the tests."""

import torch


def timm_attention(module, x: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) for a timm ``Attention`` module's own weights: (batch, heads, T, T)."""
    batch, tokens, dim = x.shape
    heads = module.num_heads
    qkv = torch.einsum("btc,oc->bto", x, module.qkv.weight)
    if module.qkv.bias is not None:
        qkv = qkv + module.qkv.bias
    q, k, _ = qkv.reshape(batch, tokens, 3, heads, dim // heads).permute(2, 0, 3, 1, 4)
    return torch.softmax(torch.einsum("bhqd,bhkd->bhqk", q, k) / (dim // heads) ** 0.5, dim=-1)
