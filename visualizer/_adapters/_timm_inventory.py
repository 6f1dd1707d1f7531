"""Every timm 1.0 class that computes attention probabilities, and how the timm adapter handles it.

>>> plan_for(type(vit.blocks[0].attn))
Plan(variable='attn', switch=True, kind='self', layout='tokens', ...)
>>> plan_for(LambdaLayer)
'computes lambda (linear) attention: the softmax normalises the keys ...'

:data:`INVENTORY` maps ``"module.Class"`` to a :class:`Plan` (captured) or to a str (refused,
the reason). A plan names the local variable that holds the map when the method returns
(taken by a get_local tap), whether the instance's ``fused_attn`` switch is turned off for
the capture, the kind, the layout (``"tokens"``, ``"channels"``, or ``"windows"``, worked out
per call from the enclosing block, see ``_timm_windows``), a ``shape`` fix for maps kept
without a heads dimension, and, where the map is not a softmax output itself, ``derive``:
how the map follows from the softmax (or ``scaled_dot_product_attention``) probabilities the
module computed, in order (talking heads, differential attention, ConViT's gated attention).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

__all__ = ["INVENTORY", "Plan", "plan_for"]


@dataclasses.dataclass(frozen=True)
class Plan:
    """How one class is captured; see the module docstring."""

    variable: str = "attn"
    switch: bool = True  # turn fused_attn off for the capture
    kind: str = "self"
    layout: str = "tokens"  # "tokens", "channels" or "windows"
    method: str = "forward"
    shape: Callable[[Any, Any], Any] | None = None  # (module, value) -> (batch, heads, q, k)
    derive: Callable[[Any, list], Any] | None = None  # (module, probabilities) -> map
    note: str = ""
    #: The fused path's one scaled_dot_product_attention call already has (batch, heads, ...)
    #: queries, so its map can be rebuilt even though the unfused map needs ``shape``.
    fused_shaped: bool = False


def _one_head(module, value):
    """(batch, queries, keys) -> (batch, 1, queries, keys)."""
    return value.unsqueeze(1)


def _heads_in_batch(module, value):
    """(batch x heads, queries, keys) -> (batch, heads, queries, keys)."""
    return value.reshape(-1, module.num_heads, *value.shape[-2:])


def _talking_heads(module, probabilities):
    (p,) = probabilities
    return module.proj_w(p.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def _talking_heads_2d(module, probabilities):
    (p,) = probabilities
    return module.talking_head2(p)


def _differential(module, probabilities):
    lam = module._compute_lambda().type_as(probabilities[0])
    if len(probabilities) == 2:  # the fused path: one sdpa per group
        first, second = probabilities
    else:
        p = probabilities[0]
        p = p.reshape(p.shape[0], module.num_heads, 2, *p.shape[-2:])
        first, second = p[:, :, 0], p[:, :, 1]
    return first - lam * second


def _gated(module, probabilities):
    patch, position = probabilities
    import torch

    gate = torch.sigmoid(module.gating_param.view(1, -1, 1, 1))
    attn = (1.0 - gate) * patch + gate * position
    return attn / attn.sum(dim=-1, keepdim=True)


TOKENS = Plan()
NO_SWITCH = Plan(switch=False)
WINDOWS = Plan(layout="windows")
CHANNELS = Plan(layout="channels")
L, M = "timm.layers.", "timm.models."

_WINDOWED = "computes attention inside local windows whose layout this adapter does not declare"

INVENTORY: Mapping[str, Plan | str] = MappingProxyType(
    {
        # timm.layers
        L + "attention.Attention": TOKENS,
        L + "attention.AttentionRope": TOKENS,
        L + "attention2d.Attention2d": TOKENS,
        L + "attention2d.MultiQueryAttentionV2": (
            "multi-query attention kept as an einsum map (batch, queries, heads, keys); not declared"
        ),
        L + "attention2d.MultiQueryAttention2d": (
            "multi-query attention with spatially downsampled queries and keys kept in two different "
            "layouts depending on the path; not declared"
        ),
        L + "attention_pool.AttentionPoolLatent": dataclasses.replace(
            TOKENS, kind="cross", note="learned latent queries attend to the tokens"
        ),
        L + "attention_pool.AttentionPoolPrr": TOKENS,
        L + "attention_pool2d.AttentionPool2d": dataclasses.replace(
            TOKENS, note="the pooled (class or mean) token is part of the sequence, so self-attention"
        ),
        L + "attention_pool2d.RotAttentionPool2d": TOKENS,
        L + "other_pool.SimPool1d": dataclasses.replace(TOKENS, note="the query is the mean token"),
        L + "other_pool.SimPool2d": dataclasses.replace(TOKENS, note="the query is the mean token"),
        L + "diff_attention.DiffAttention": dataclasses.replace(
            TOKENS, derive=_differential, note="the differential map softmax1 - lambda * softmax2"
        ),
        L + "bottleneck_attn.BottleneckAttn": dataclasses.replace(NO_SWITCH, shape=_heads_in_batch),
        L + "non_local_attn.NonLocalAttn": dataclasses.replace(NO_SWITCH, variable="att", shape=_one_head),
        L + "halo_attn.HaloAttn": (
            "halo attention: each block of queries attends to an overlapping neighbourhood of keys, "
            "which has no window layout"
        ),
        L + "lambda_layer.LambdaLayer": (
            "computes lambda (linear) attention: the softmax normalises the keys, there is no query-key map"
        ),
        L + "global_context.GlobalContext": (
            "global context pooling: one softmax over positions from a 1x1 conv, no query-key map"
        ),
        # timm.models
        M + "beit.Attention": TOKENS,
        M + "cait.ClassAttn": dataclasses.replace(
            TOKENS, note="the class token (part of the sequence) is the only query"
        ),
        M + "cait.TalkingHeadAttn": dataclasses.replace(
            NO_SWITCH, derive=_talking_heads, note="after the softmax, proj_w mixes the heads"
        ),
        M + "coat.FactorAttnConvRelPosEnc": (
            "factorized (linear) attention: the softmax normalises the keys, then k^T v; no query-key map"
        ),
        M + "convit.GPSA": dataclasses.replace(
            NO_SWITCH, derive=_gated, note="gated mix of content and positional softmaxes, renormalised"
        ),
        M + "convit.MHSA": NO_SWITCH,
        M + "cpubone.ConvAttention": TOKENS,
        M + "crossvit.CrossAttention": dataclasses.replace(
            NO_SWITCH, kind="cross", note="the other branch's class token queries this branch's tokens"
        ),
        M + "csatv2.SpatialTransformerBlock": (
            "multiplies (batch, tokens) queries and keys, so its softmax map is (batch, batch), across the "
            "images of a batch, not between tokens"
        ),
        M + "davit.ChannelAttention": dataclasses.replace(NO_SWITCH, layout="channels"),
        M + "davit.ChannelAttentionV2": dataclasses.replace(NO_SWITCH, layout="channels"),
        M + "davit.WindowAttention": _WINDOWED,
        M + "edgenext.CrossCovarianceAttn": dataclasses.replace(NO_SWITCH, layout="channels"),
        M + "efficientformer.Attention": NO_SWITCH,
        M + "efficientformer_v2.Attention2d": dataclasses.replace(
            NO_SWITCH, derive=_talking_heads_2d, note="after the softmax, talking_head2 mixes the heads"
        ),
        M + "efficientformer_v2.Attention2dDownsample": NO_SWITCH,
        M + "efficientvim.HSMSSD": (
            "a state-space mixer: the softmax normalises state transitions, not query-key attention"
        ),
        M + "efficientvit_mit.LiteMLA": "computes ReLU linear attention without a softmax map",
        M + "efficientvit_msra.CascadedGroupAttention": (
            "computes each head in a loop and keeps only the last head's map in a local"
        ),
        M + "eva.EvaAttention": TOKENS,
        M + "fastvit.Attention": TOKENS,
        M + "gcvit.WindowAttentionGlobal": _WINDOWED,
        M + "gemma4_vit.Gemma4Attention": TOKENS,
        M + "hiera.MaskUnitAttention": (
            "attention over Hiera's unrolled token order, inside mask units; no token layout declared"
        ),
        M + "hieradet_sam2.MultiScaleAttention": TOKENS,  # windowed blocks refused in _timm_windows
        M + "iformer.SHMA": dataclasses.replace(TOKENS, shape=_one_head, fused_shaped=True),  # one head
        M + "levit.Attention": NO_SWITCH,
        M + "levit.AttentionDownsample": NO_SWITCH,
        M + "lowformer.ConvAttention": TOKENS,
        M + "maxxvit.Attention2d": TOKENS,  # windows inside partition blocks, see _timm_windows
        M + "maxxvit.AttentionCl": TOKENS,
        M + "metaformer.Attention": TOKENS,
        M + "mobilevit.LinearSelfAttention": (
            "separable linear attention: one context score per token, no query-key map"
        ),
        M + "mvitv2.MultiScaleAttention": NO_SWITCH,
        M + "mvitv2.MultiScaleAttentionPoolFirst": NO_SWITCH,
        M + "nest.Attention": "block-local attention over NesT's image blocks (batch, heads, blocks, n, n)",
        M + "nextvit.EfficientAttention": TOKENS,
        M + "pvt_v2.Attention": TOKENS,
        M + "shvit.SHSA": dataclasses.replace(NO_SWITCH, shape=_one_head),
        M + "swiftformer.EfficientAdditiveAttention": "computes additive attention without a softmax map",
        M + "swin_transformer.WindowAttention": WINDOWS,
        M + "swin_transformer_v2.WindowAttention": dataclasses.replace(WINDOWS, switch=False),
        M + "swin_transformer_v2_cr.WindowMultiHeadAttention": dataclasses.replace(WINDOWS, switch=False),
        M + "tiny_vit.Attention": _WINDOWED,
        M + "tnt.Attention": NO_SWITCH,  # the pixel-level attn_in is refused in _timm_windows
        M + "twins.LocallyGroupedAttn": _WINDOWED,
        M + "twins.GlobalSubSampleAttn": TOKENS,
        M + "visformer.Attention": TOKENS,
        M + "vision_transformer.ParallelScalingBlock": TOKENS,
        M + "vision_transformer.DiffParallelScalingBlock": dataclasses.replace(
            TOKENS, derive=_differential, note="the differential map softmax1 - lambda * softmax2"
        ),
        M + "vision_transformer_relpos.RelPosAttention": TOKENS,
        M + "vision_transformer_sam.Attention": TOKENS,  # windows in windowed blocks, see _timm_windows
        M + "volo.OutlookAttention": (
            "outlook attention: weights predicted by a linear layer for a local window, not a query-key map"
        ),
        M + "volo.Attention": TOKENS,
        M + "volo.ClassAttention": NO_SWITCH,
        M + "xcit.XCA": CHANNELS,
    }
)


def plan_for(cls) -> Plan | str | None:
    """The plan (or refusal reason) for ``cls``: its own entry or its nearest listed base class."""
    for klass in cls.__mro__:
        entry = INVENTORY.get(f"{klass.__module__}.{klass.__qualname__}")
        if entry is not None:
            return entry
    return None
