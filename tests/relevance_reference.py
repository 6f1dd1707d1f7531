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


# -- attnlrp (CP-LRP): a reference written from the rules -------------------------------------------


@contextlib.contextmanager
def conservative(model, unreproduced: list | None = None):
    """While open, ``model`` follows Ali et al.'s conservative-propagation rules by rewritten math:
    every sdpa call gets detached queries and keys, softmax(scale q kᵀ + mask) @ v with the
    probabilities constant (the kernel itself computes it: the math would differ in the last
    bits, which a mixture of experts' router amplifies to 1e-3), and each LayerNorm / RMSNorm
    module's forward is replaced by its
    formula with 1/σ detached (this reference knows ``nn.LayerNorm`` and the RMS norms over the
    last axis with ``variance_epsilon``/``eps``: Llama's, Qwen's, T5's, timm's, Gemma's 1 + weight).
    Each formula's values are checked against the module's own forward; the paths of those that
    differ are appended to ``unreproduced`` (the reference does not know that norm after all)."""
    originals = {}
    for name, module in model.named_modules():
        formula = _conservative_norm(module)
        if formula is not None:
            originals[name] = module
            module.forward = _checked(name, module, formula, unreproduced)
    kernel = F.scaled_dot_product_attention

    def constant_probabilities(q, k, v, *args, **kwargs):
        return kernel(q.detach(), k.detach(), v, *args, **kwargs)

    F.scaled_dot_product_attention = constant_probabilities
    try:
        yield
    finally:
        F.scaled_dot_product_attention = kernel
        for module in originals.values():
            del module.forward


def _checked(name, module, formula, unreproduced):
    def forward(x):
        out = formula(x)
        with torch.no_grad():
            own = type(module).forward(module, x)
        if unreproduced is not None and not torch.allclose(out.float(), own.float(), rtol=1e-3, atol=1e-4):
            unreproduced.append(name)
        return out

    return forward


def _conservative_norm(module):
    if isinstance(module, torch.nn.LayerNorm):

        def layer_norm(x, module=module):
            centred = x - x.mean(-1, keepdim=True)
            scale = torch.rsqrt(centred.pow(2).mean(-1, keepdim=True) + module.eps).detach()
            out = centred * scale
            if module.weight is not None:
                out = out * module.weight
            return (out + module.bias if module.bias is not None else out).contiguous()

        return layer_norm
    name = type(module).__name__
    if name.endswith(("RMSNorm", "RmsNorm", "RmsNormFp32")) or name == "T5LayerNorm":
        eps = getattr(module, "variance_epsilon", getattr(module, "eps", None))
        if not isinstance(eps, float):
            return None
        gemma = name.startswith("Gemma")

        def rms_norm(x, module=module, eps=eps, gemma=gemma):
            dtype = x.dtype
            x = x.float()
            out = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps).detach()
            weight = getattr(module, "weight", None)
            if weight is None:
                return out.to(dtype)
            weight = weight.float() + 1.0 if gemma else weight.float()
            return (out * weight).to(dtype)

        return rms_norm
    return None


def unknown_norms(model) -> list[str]:
    """The normalisation layers of ``model`` whose formula :func:`conservative` does not know (leaf
    modules named ``...Norm...``, batch, group, instance, weight and spectral norms aside)."""
    unknown = []
    for name, module in model.named_modules():
        kind = type(module).__name__
        excepted = ("Batch", "Group", "Instance", "Weight", "Spectral")
        if "Norm" not in kind or any(other in kind for other in excepted):
            continue
        if list(module.children()) and not isinstance(module, torch.nn.LayerNorm):
            continue
        if _conservative_norm(module) is None:
            unknown.append(f"{name} ({kind})")
    return unknown


def attnlrp(model, run, target, blocks, unreproduced: list | None = None):
    """CP-LRP scores (batch, tokens): gradient x input at the hidden states entering the first of
    ``blocks`` (modules) that runs, under :func:`conservative`; ``run(model)`` returns the output,
    ``target(output)`` a (batch,) tensor."""
    leaves: list = []

    def pre_hook(module, args, kwargs):
        if leaves:
            return None
        if args and isinstance(args[0], torch.Tensor):
            leaves.append(args[0].detach().requires_grad_(True))
            return (leaves[0], *args[1:]), kwargs
        key = next(k for k in ("hidden_states", "x", "src") if isinstance(kwargs.get(k), torch.Tensor))
        leaves.append(kwargs[key].detach().requires_grad_(True))
        return args, {**kwargs, key: leaves[0]}

    blocks = blocks if isinstance(blocks, (list, tuple)) else [blocks]
    handles = [block.register_forward_pre_hook(pre_hook, with_kwargs=True) for block in blocks]
    try:
        with torch.enable_grad(), conservative(model, unreproduced):
            values = target(run(model))
            (grad,) = torch.autograd.grad(values.sum(), leaves)
    finally:
        for handle in handles:
            handle.remove()
    return (grad * leaves[0]).sum(-1).detach()


def first_blocks(model) -> list:
    """The blocks holding attention modules, in model order (for :func:`attnlrp`, whose leaf is the
    input of the first of them that runs)."""
    targets, _ = find_targets(model, visualizer.get_local)
    blocks = []
    for target in targets:
        if not any(part.isdigit() for part in target.name.split(".")):
            continue  # (an attention pooling head, after the blocks)
        block = first_block(model, target.name)
        if all(block is not other for other in blocks):
            blocks.append(block)
    return blocks


def first_block(model, name: str):
    """The block holding the attention module ``name``: the module itself or its deepest ancestor
    that is an item of a ModuleList or Sequential (a path segment that is a number)."""
    parts = name.split(".")
    index = max((i for i, part in enumerate(parts) if part.isdigit()), default=None)
    if index is None:
        raise ValueError(f"{name} is in no numbered block")
    return model.get_submodule(".".join(parts[: index + 1]))
