"""A reference for ``explain(method="attention_grad")`` written from eager maps and autograd.

``scaled_dot_product_attention`` is replaced, for one forward, by the math it defines
(softmax(scale q kᵀ + mask) @ v), whose probabilities A keep their gradient; ∂y/∂A then comes
from plain autograd, and Chefer et al.'s rules are applied to whole matrices, in forward order:
Ā = meanₕ max(0, A.grad ⊙ A); one stack: R = I, R ← R + Ā R, row ``position``; encoder-decoder:
R_ss ← R_ss + Ā R_ss (encoder self), R_qq ← R_qq + Ā R_qq and R_qs ← R_qs + Ā R_qs (decoder
self), R_qs ← R_qs + R̄_qqᵀ Ā R̄_ss (cross), R̄ = (R - I) row-normalised + I. Each kernel call is
attributed to the attention module running it (forward hooks), for its role and kind.
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F

import visualizer
from visualizer._adapters import find_targets


@contextlib.contextmanager
def math_attention(model, record: list):
    """While open, every sdpa call inside an attention module of ``model`` is computed by its math,
    and (module's target, A) is appended to ``record``; A retains its gradient."""
    targets, _ = find_targets(model, visualizer.get_local)
    running: list = []
    handles = []
    for target in targets:
        handles.append(target.module.register_forward_pre_hook(lambda m, a, t=target: running.append(t)))
        handles.append(target.module.register_forward_hook(lambda m, a, o: _pop(running), always_call=True))
    original = F.scaled_dot_product_attention

    def sdpa(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
        if not running:
            return original(q, k, v, attn_mask, dropout_p, is_causal, scale=scale, enable_gqa=enable_gqa)
        if k.shape[-3] != q.shape[-3]:
            k = k.repeat_interleave(q.shape[-3] // k.shape[-3], -3)
            v = v.repeat_interleave(q.shape[-3] // v.shape[-3], -3)
        scores = (q @ k.transpose(-1, -2)) * (scale if scale is not None else 1 / math.sqrt(q.shape[-1]))
        if is_causal:
            hidden = torch.ones(scores.shape[-2:], dtype=torch.bool, device=q.device).triu(1)
            scores = scores.masked_fill(hidden, float("-inf"))
        if attn_mask is not None:
            scores = (
                scores.masked_fill(~attn_mask, float("-inf"))
                if attn_mask.dtype == torch.bool
                else scores + attn_mask
            )
        weights = scores.softmax(-1).nan_to_num(0.0)
        if weights.requires_grad:
            weights.retain_grad()
        record.append((running[-1], weights))
        return weights @ v

    F.scaled_dot_product_attention = sdpa
    try:
        yield
    finally:
        F.scaled_dot_product_attention = original
        for handle in handles:
            handle.remove()


def _pop(running: list) -> None:
    running.pop()


def attention_grad(model, run, target, position):
    """(scores, decoder scores or None) by the rules above; ``run(model)`` returns the output,
    ``target(output)`` a (batch,) tensor; ``position`` the row (negative from the end)."""
    record: list = []
    with torch.enable_grad(), math_attention(model, record):
        values = target(run(model))
        values.sum().backward()
    batch = record[0][1].shape[0]
    means = [(t, (a.grad * a).clamp(min=0).mean(1).detach()) for t, a in record]
    if not any(t.kind == "cross" or t.role == "decoder" for t, _ in means):
        tokens = means[0][1].shape[-1]
        relevance = torch.eye(tokens).expand(batch, tokens, tokens).clone()
        for _, mean in means:
            relevance = relevance + mean @ relevance
        return relevance[:, position], None

    def normalised(relevance):
        eye = torch.eye(relevance.shape[-1])
        residual = relevance - eye
        sums = residual.sum(-1, keepdim=True)
        return torch.where(sums != 0, residual / torch.where(sums != 0, sums, 1.0), 0.0) + eye

    sources = next(m.shape[-1] for t, m in means if t.kind == "cross")
    targets = next(m.shape[-1] for t, m in means if t.kind == "self" and t.role == "decoder")
    r_ss = torch.eye(sources).expand(batch, sources, sources).clone()
    r_qq = torch.eye(targets).expand(batch, targets, targets).clone()
    r_qs = torch.zeros(batch, targets, sources)
    for t, mean in means:
        if t.kind == "cross":
            r_qs = r_qs + normalised(r_qq).transpose(-1, -2) @ mean @ normalised(r_ss)
        elif t.role == "decoder":
            r_qq, r_qs = r_qq + mean @ r_qq, r_qs + mean @ r_qs
        else:
            r_ss = r_ss + mean @ r_ss
    return r_qs[:, position], r_qq[:, position]
