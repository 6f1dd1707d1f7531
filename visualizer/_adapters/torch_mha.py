"""``torch.nn.MultiheadAttention``, alone or inside ``nn.Transformer*`` layers.

``nn.TransformerEncoderLayer`` and ``nn.TransformerDecoderLayer`` call their attention
with ``need_weights=False``, and under ``eval()`` + ``no_grad()`` the encoder layer may
skip the Python code entirely (PyTorch's fast path). During capture each selected
module gets a forward pre-hook that asks for per-head weights
(``need_weights=True, average_attn_weights=False``) and a forward hook that records them
and hands the caller exactly what it asked for (``None``, or the head average).

With the capture's ``lazy`` (the default where exact), the module runs exactly as called,
its fused kernel and fast paths included: the pre-hook projects the queries and keys itself
with the module's own input projection and keeps them with the masks it was given, from
which the map is rebuilt on demand; a call whose inputs are nested tensors, or a module
with ``add_bias_kv`` or ``add_zero_attn``, is computed eagerly as below.

A layer whose modules have forward hooks never takes the fused layer fast path (torch
checks for hooks), so its attention runs as a module call; outputs then differ from the
fused path by float rounding (about 1e-6). ``nn.TransformerEncoder`` still packs a padded
batch into a nested tensor under eval + no_grad; the attention's own fast path then
returns padded per-head weights (zero rows for padding queries), and padding positions
of the output stay exactly zero, as without capture.
"""

from __future__ import annotations

import threading
import weakref

from visualizer._adapters import Target, block_of
from visualizer._adapters._events import AttentionCall, EditPoint
from visualizer._adapters._switches import hold
from visualizer._sessions import SESSIONS

__all__ = ["ADAPTER"]

ADAPTER_NAME = "torch"
#: The name of a MultiheadAttention's hooks in the registry of sessions (``visualizer._sessions``).
PART = "multihead attention"


class TorchAdapter:
    """``nn.MultiheadAttention``; roles and kinds from ``nn.Transformer*`` layers and their attributes."""

    name = ADAPTER_NAME
    framework = "torch"
    supports = "nn.MultiheadAttention (also inside nn.Transformer* layers)"
    order = 30  # nn.MultiheadAttention

    def find(self, model, modules, claimed, core) -> list:
        from torch import nn

        everything = dict(model.named_modules())
        parents = {}
        for _, module in everything.items():
            for child_name, child in module.named_children():
                parents[id(child)] = (module, child_name)
        targets: list = []
        for name, module in modules:
            if id(module) in claimed or not isinstance(module, nn.MultiheadAttention):
                continue
            parent, attribute = parents.get(id(module), (None, ""))
            kind, role, block = "self", None, None
            if isinstance(parent, nn.TransformerDecoderLayer):
                # torch's decoder layer: self_attn over the target, multihead_attn over the memory.
                role, kind = "decoder", "cross" if attribute == "multihead_attn" else "self"
                block = name.rsplit(".", 1)[0] if "." in name else ""
            elif isinstance(parent, nn.TransformerEncoderLayer):
                role = "encoder"
                block = name.rsplit(".", 1)[0] if "." in name else ""
            else:
                block = block_of(name, everything)
            target = Target(name, module, ADAPTER_NAME, kind=kind, role=role, block=block)
            target.eager_because = _rebuild(module)
            targets.append(target)
        return targets

    def attach(self, targets, recorder, core):
        return attach(targets, recorder)

    def edit_point(self, target, modules) -> EditPoint | str:
        if target.eager_because is not None:
            return f"{target.name} (nn.MultiheadAttention): {target.eager_because}"
        module = target.module
        return EditPoint(None, module.num_heads, kernel=True, prepare=lambda: _editing(module))


ADAPTER = TorchAdapter()


def attach(targets, recorder):
    attached: list = []
    try:
        for target in targets:
            _Shared.of(target.module).add(target, recorder)
            attached.append(target)
    except BaseException:
        _detach(attached, recorder)
        raise
    return lambda: _detach(attached, recorder)


def _detach(targets, recorder) -> None:
    for target in targets:
        shared = SESSIONS.get(target.module, PART)
        if shared is not None:
            shared.remove(target, recorder)


# MultiheadAttention.forward(query, key, value, key_padding_mask, need_weights, attn_mask,
# average_attn_weights, is_causal): callers usually pass the flags by keyword.
_POSITIONAL = (
    "query",
    "key",
    "value",
    "key_padding_mask",
    "need_weights",
    "attn_mask",
    "average_attn_weights",
    "is_causal",
)


class _Shared:
    """The one pair of hooks on a MultiheadAttention module, serving every capture open on it.

    Nested and overlapping captures of one model each get every map: the hooks force the
    weights once, hand them to every capture's recorder, and give the caller what it asked for.
    """

    __slots__ = ("__weakref__", "asked", "editing", "handles", "listeners", "module")

    @classmethod
    def of(cls, module) -> _Shared:
        return SESSIONS.part(module, PART, lambda: cls(module))

    def __init__(self, module) -> None:
        self.module = weakref.ref(module)
        self.listeners: tuple = ()  # ((target, recorder), ...), replaced whole
        self.editing = 0  # seams with editors or taps on the module (see _editing)
        self.asked = threading.local()  # what each (possibly nested) caller asked for, per thread
        self.handles = (
            module.register_forward_pre_hook(self.before, with_kwargs=True),
            module.register_forward_hook(self.after, with_kwargs=True, always_call=True),
        )

    def add(self, target, recorder) -> None:
        with SESSIONS.lock:
            self.listeners = (*self.listeners, (target, recorder))

    def remove(self, target, recorder) -> None:
        with SESSIONS.lock:
            self.listeners = tuple(
                pair for pair in self.listeners if not (pair[0] is target and pair[1] is recorder)
            )
            self.close_if_idle()

    def close_if_idle(self) -> None:
        with SESSIONS.lock:
            if self.listeners or self.editing:
                return
            for handle in self.handles:
                handle.remove()
            module = self.module()
            if module is not None:
                SESSIONS.drop(module, PART, self)

    def before(self, module, args, kwargs):
        listeners = self.listeners
        if not listeners and not self.editing:
            return None
        for target, recorder in listeners:
            recorder.ran(target)
        if 4 < len(args) <= len(_POSITIONAL):  # flags passed by position: move them to keywords
            kwargs = {**dict(zip(_POSITIONAL, args)), **kwargs}
            args = ()
        else:  # (more than all of them makes torch raise its own TypeError)
            kwargs = dict(kwargs)
        stack = getattr(self.asked, "stack", None)
        if stack is None:
            stack = self.asked.stack = []
        asked = (kwargs.get("need_weights", True), kwargs.get("average_attn_weights", True))
        if self.editing:  # through multi_head_attention_forward's sdpa call, weights rebuilt after
            inputs = None  # the queries and keys, projected only where a caller or capture needs them
            if asked[0] or listeners:
                inputs = _recipe(listeners[0][0] if listeners else None, module, args, kwargs)
            if isinstance(inputs, str):
                raise ValueError(
                    f"an editor or gradient tap acts on this nn.MultiheadAttention, but {inputs}; "
                    "its weights cannot be rebuilt for the caller"
                )
            stack.append((*asked, listeners, inputs, True))
            kwargs["need_weights"] = False
            return args, kwargs
        recipe: object = None
        if all(target.lazy for target, _ in listeners):
            recipe = _recipe(listeners[0][0], module, args, kwargs)
        stack.append((*asked, listeners, recipe, False))
        if recipe is not None and not isinstance(recipe, str):
            return None  # the module runs as called, its own kernel and fast paths included
        kwargs["need_weights"] = True
        kwargs["average_attn_weights"] = False
        return args, kwargs

    def after(self, module, args, kwargs, output):
        stack = getattr(self.asked, "stack", None)
        if not stack:
            return None
        need_weights, average, listeners, recipe, edited = stack.pop()
        if output is None:  # forward raised
            return None
        if edited:
            return _rebuilt(output[0], need_weights, average, listeners, recipe, args, kwargs)
        if recipe is not None and not isinstance(recipe, str):
            for target, recorder in listeners:
                recorder.record(recipe.for_target(target))
            return None
        out, weights = output
        for target, recorder in listeners:
            if target.lazy and weights is not None:
                reason = (
                    recipe if isinstance(recipe, str) else "another capture open on it needs eager weights"
                )
                recorder.record(AttentionCall(target, "eager", probabilities=weights, eager_because=reason))
                continue
            if weights is None:
                recorder.missing(
                    target, f"{target.name} returned no weights although need_weights=True was passed"
                )
            else:
                recorder.record(AttentionCall(target, "eager", probabilities=weights))
        if weights is None:
            return None
        if not need_weights:
            return out, None
        if average:
            return out, weights.mean(dim=-3)
        return out, weights


def _rebuilt(out, need_weights, average, listeners, inputs, args, kwargs):
    """The caller's output of a call sent through the kernel for an editor: the weights it asked
    for, and every capture's, rebuilt from the call's queries and keys."""
    weights = None
    if need_weights or any(not target.lazy for target, _ in listeners):
        weights = inputs.recipe().full()
    for target, recorder in listeners:
        if target.lazy:
            recorder.record(inputs.for_target(target))
        else:
            recorder.record(AttentionCall(target, "eager", probabilities=weights))
    if not need_weights:
        return out, None
    query = dict(zip(_POSITIONAL, args)).get("query", kwargs.get("query"))
    if query.dim() == 2:  # unbatched
        weights = weights[0]
    return out, weights.mean(dim=-3) if average else weights


def _editing(module):
    """While an editor or gradient tap acts on ``module``: its calls go through
    ``multi_head_attention_forward``'s kernel call (need_weights=False, torch's MHA fast paths
    off process-wide, held as a setting), the weights the caller asked for rebuilt after."""
    import torch.backends.mha

    shared = _Shared.of(module)
    with SESSIONS.lock:
        shared.editing += 1
    release = hold(torch.backends.mha, "_is_fastpath_enabled")
    torch.backends.mha._is_fastpath_enabled = False
    done = False

    def undo() -> None:
        nonlocal done
        if done:
            return
        done = True
        release()
        with SESSIONS.lock:
            shared.editing -= 1
        shared.close_if_idle()

    return undo


def _rebuild(module) -> str | None:
    """None where the map follows from the module's projections and masks alone; else why not."""
    if module.bias_k is not None or module.add_zero_attn:
        return "its learned key bias (add_bias_kv) or zero attention (add_zero_attn) joins the keys"
    return None


def _recipe(target, module, args, kwargs):
    """The event of one call (source ``inputs``), from the module's own input projection of its
    inputs and the masks it was given (as ``multi_head_attention_forward`` merges them); a str where
    this call needs eager weights."""
    import torch
    import torch.nn.functional as F

    named = dict(zip(_POSITIONAL, args))
    query = named.get("query", kwargs.get("query"))
    key = named.get("key", kwargs.get("key"))
    if not isinstance(query, torch.Tensor) or not isinstance(key, torch.Tensor):
        return "its query or key is not a tensor"
    if query.is_nested or key.is_nested:
        return "nn.TransformerEncoder packed the padded batch into a nested tensor"
    attn_mask = named.get("attn_mask", kwargs.get("attn_mask"))
    padding = named.get("key_padding_mask", kwargs.get("key_padding_mask"))
    unbatched = query.dim() == 2
    if unbatched:
        query, key = query.unsqueeze(1), key.unsqueeze(1)  # (tokens, 1, embed)
        padding = padding.unsqueeze(0) if padding is not None else None
    if module.batch_first and not unbatched:
        query, key = query.transpose(0, 1), key.transpose(0, 1)
    # (tokens, batch, embed) from here, as multi_head_attention_forward computes
    embed, heads = module.embed_dim, module.num_heads
    if module._qkv_same_embed_dim:
        w_q, w_k = module.in_proj_weight[:embed], module.in_proj_weight[embed : 2 * embed]
    else:
        w_q, w_k = module.q_proj_weight, module.k_proj_weight
    bias = module.in_proj_bias
    b_q, b_k = (None, None) if bias is None else (bias[:embed], bias[embed : 2 * embed])
    q = F.linear(query, w_q, b_q)
    k = F.linear(key, w_k, b_k)
    batch = q.shape[1]
    q = q.reshape(q.shape[0], batch, heads, -1).permute(1, 2, 0, 3)  # (batch, heads, tokens, head dim)
    k = k.reshape(k.shape[0], batch, heads, -1).permute(1, 2, 0, 3)
    masks = []
    if attn_mask is not None:
        if attn_mask.dim() == 3:  # (batch x heads, queries, keys)
            attn_mask = attn_mask.reshape(batch, heads, *attn_mask.shape[-2:])
        masks.append(~attn_mask if attn_mask.dtype == torch.bool else attn_mask)
    if padding is not None:
        padding = padding.reshape(batch, 1, 1, -1)
        masks.append(~padding if padding.dtype == torch.bool else padding)
    dropout = module.dropout if module.training else 0.0
    return AttentionCall(target, "inputs", query=q, key=k, masks=tuple(masks), dropout=dropout, heads=heads)
