"""``torch.nn.MultiheadAttention``, alone or inside ``nn.Transformer*`` layers.

``nn.TransformerEncoderLayer`` and ``nn.TransformerDecoderLayer`` call their attention
with ``need_weights=False``, and under ``eval()`` + ``no_grad()`` the encoder layer may
skip the Python code entirely (PyTorch's fast path). During capture each selected
module gets a forward pre-hook that asks for per-head weights
(``need_weights=True, average_attn_weights=False``) and a forward hook that records them
and hands the caller exactly what it asked for (``None``, or the head average).

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

__all__ = ["ADAPTER"]

ADAPTER_NAME = "torch"


class TorchAdapter:
    """``nn.MultiheadAttention``; roles and kinds from ``nn.Transformer*`` layers and their attributes."""

    name = ADAPTER_NAME
    framework = "torch"
    supports = "nn.MultiheadAttention (also inside nn.Transformer* layers)"

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
            targets.append(Target(name, module, ADAPTER_NAME, kind=kind, role=role, block=block))
        return targets

    def attach(self, targets, recorder, core):
        return attach(targets, recorder)


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
        shared = _SHARED.get(target.module)
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

    __slots__ = ("__weakref__", "asked", "handles", "listeners", "module")

    @classmethod
    def of(cls, module) -> _Shared:
        with _LOCK:
            shared = _SHARED.get(module)
            if shared is None:
                shared = _SHARED[module] = cls(module)
            return shared

    def __init__(self, module) -> None:
        self.module = weakref.ref(module)
        self.listeners: tuple = ()  # ((target, recorder), ...), replaced whole
        self.asked = threading.local()  # what each (possibly nested) caller asked for, per thread
        self.handles = (
            module.register_forward_pre_hook(self.before, with_kwargs=True),
            module.register_forward_hook(self.after, with_kwargs=True, always_call=True),
        )

    def add(self, target, recorder) -> None:
        with _LOCK:
            self.listeners = (*self.listeners, (target, recorder))

    def remove(self, target, recorder) -> None:
        with _LOCK:
            self.listeners = tuple(
                pair for pair in self.listeners if not (pair[0] is target and pair[1] is recorder)
            )
            if not self.listeners:
                for handle in self.handles:
                    handle.remove()
                module = self.module()
                if module is not None and _SHARED.get(module) is self:
                    del _SHARED[module]

    def before(self, module, args, kwargs):
        listeners = self.listeners
        if not listeners:
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
        stack.append((kwargs.get("need_weights", True), kwargs.get("average_attn_weights", True), listeners))
        kwargs["need_weights"] = True
        kwargs["average_attn_weights"] = False
        return args, kwargs

    def after(self, module, args, kwargs, output):
        stack = getattr(self.asked, "stack", None)
        if not stack:
            return None
        need_weights, average, listeners = stack.pop()
        if output is None:  # forward raised
            return None
        out, weights = output
        for target, recorder in listeners:
            if weights is None:
                recorder.missing(
                    target, f"{target.name} returned no weights although need_weights=True was passed"
                )
            else:
                recorder.record(target, weights)
        if weights is None:
            return None
        if not need_weights:
            return out, None
        if average:
            return out, weights.mean(dim=-3)
        return out, weights


_SHARED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # module -> _Shared
_LOCK = threading.Lock()
