"""transformers models without ``_can_record_outputs``: captured through their own ``output_attentions``.

>>> plan = find_fallback(model, "", available, claimed)   # [(path, module, kind), ...] or a reason
>>> unit = Unit(model, targets, recorder, windows)         # hooks; unit.close() removes them

Older model code (DeBERTa-v2, Swinv2, GPT-Neo, ...) threads an ``output_attentions``
argument down to the modules that compute the weights and collects them into the
output's attention fields (``attentions``, ``encoder_attentions``, ``decoder_attentions``,
``cross_attentions``). The attention modules are the innermost modules whose forward
takes ``output_attentions``, in model order (a decoder layer has its self-attention first,
its cross-attention after). During capture a forward pre-hook on the model asks for
``output_attentions=True`` (and a dict output); every attention module's output is kept,
and when the model returns, each tensor of its attention fields is found, by identity,
in the output of the module that produced it (where the model permuted or copied them, the
n-th tensor of a field goes to the n-th call of its role and kind, when the counts agree).
That tells at which position of its output each attention class puts its weights, so
every call of every module is recorded, those the model does not return included
(Swin-family stages return only their last block).
The model's output then loses the fields the caller did not ask for.
"""

from __future__ import annotations

import dataclasses
import inspect
import threading
from types import MappingProxyType
from typing import Any

from visualizer._adapters._events import AttentionCall

__all__ = ["FallbackPayload", "Unit", "find_fallback"]

FIELDS = ("attentions", "encoder_attentions", "decoder_attentions", "cross_attentions")


@dataclasses.dataclass(frozen=True)
class FallbackPayload:
    """The model whose ``output_attentions`` hands over this module's weights."""

    model: Any


def _takes(module, name: str) -> bool:
    try:
        return name in inspect.signature(type(module).forward).parameters
    except (TypeError, ValueError):
        return False


def find_fallback(model, path: str, available: dict, claimed: dict) -> list[tuple[str, Any, str]] | str:
    """The attention modules of ``model`` (at ``path``), as ``[(path, module, kind), ...]``, or a reason.

    The innermost modules whose forward takes ``output_attentions``; in a block (layer) holding
    several, the first is self-attention and the others cross-attention when the block is a
    decoder's (the model's decoder, or a config with ``add_cross_attention``/``is_decoder``).
    """
    if not _takes(model, "output_attentions"):
        name = type(model).__name__
        return f"{name}.forward takes no output_attentions, and it declares no _can_record_outputs"
    takes = []
    for name, module in model.named_modules(prefix=path):
        if module is model or name not in available or id(module) in claimed:
            continue
        if _takes(module, "output_attentions"):
            takes.append((name, module))
    from transformers import PreTrainedModel

    nested = {name for name, module in takes if isinstance(module, PreTrainedModel)}  # models, not attentions
    innermost = [
        (name, module)
        for name, module in takes
        if not any(other.startswith(name + ".") for other, _ in takes) and name not in nested
    ]
    if not innermost:
        return (
            f"{type(model).__name__} declares no _can_record_outputs and none of its modules takes "
            "output_attentions, so its attention weights cannot be attributed to a module"
        )
    return innermost


class Unit:
    """The hooks of one fallback model during a capture."""

    def __init__(self, model, targets, recorder, windows) -> None:
        self.model = model
        self.targets = {id(target.module): target for target in targets}
        self.recorder = recorder
        self.windows = windows
        self.local = threading.local()
        self.index: dict[type, int] = {}  # attention class -> position of its weights in its output
        self.handles = [
            model.register_forward_pre_hook(self._enter, with_kwargs=True),
            # Prepended: with captures nested or overlapping, the last one opened reads the output first,
            # while the attentions that the earlier ones forced are still in it; the first one opened
            # strips them last, if the caller did not ask for them.
            model.register_forward_hook(self._leave, with_kwargs=True, always_call=True, prepend=True),
        ]
        for target in targets:
            self.handles.append(target.module.register_forward_pre_hook(self._ran(target)))
            self.handles.append(target.module.register_forward_hook(self._kept(target)))
        self.parameters = list(inspect.signature(type(model).forward).parameters)[1:]

    def _calls(self) -> list | None:
        stack = getattr(self.local, "stack", None)
        return stack[-1][0] if stack else None

    def _enter(self, model, args, kwargs):
        bound = dict(zip(self.parameters, args))
        asked = bool(
            kwargs.get("output_attentions", bound.get("output_attentions"))
            or getattr(model.config, "output_attentions", False)
        )
        wants_dict = kwargs.get("return_dict", bound.get("return_dict"))
        if not hasattr(self.local, "stack"):
            self.local.stack = []
        self.local.stack.append(([], asked, wants_dict))
        if asked and wants_dict is not False:
            return None
        args = list(args)
        for name, value in (("output_attentions", True), ("return_dict", True)):
            if name not in self.parameters:
                continue
            position = self.parameters.index(name)
            if position < len(args):
                args[position] = value
            else:
                kwargs[name] = value
        return tuple(args), kwargs

    def _ran(self, target):
        def ran(module, args):
            self.recorder.ran(target)

        return ran

    def _kept(self, target):
        def kept(module, args, output):
            calls = self._calls()
            if calls is not None:
                layout = self.windows.current() if self.windows is not None else None
                calls.append((target, _flat(output), layout))

        return kept

    def _leave(self, model, args, kwargs, output):
        stack = getattr(self.local, "stack", None)
        if not stack:
            return None
        calls, asked, wants_dict = stack.pop()
        fields = _fields(output)
        self._learn(calls, fields)
        unknown = [call for call in calls if type(call[0].module) not in self.index]
        by_position = _by_position(unknown, fields)
        for number, (target, values, layout) in enumerate(calls):
            position = self.index.get(type(target.module))
            weights = values.get(position) if position is not None else by_position.get(id(calls[number]))
            if weights is None:
                self.recorder.missing(target, self._cause(target, fields))
            else:
                self.recorder.record(AttentionCall(target, "eager", layout, probabilities=weights))
        if asked and wants_dict is not False:
            return None
        if not asked:
            output = _strip(output)
        return output.to_tuple() if wants_dict is False and hasattr(output, "to_tuple") else output

    def _learn(self, calls, fields) -> None:
        """Where each attention class puts its weights: found by identity in the returned fields."""
        returned = {id(tensor) for _, tensors in fields for tensor in tensors if tensor is not None}
        for target, values, _ in calls:
            cls = type(target.module)
            if cls in self.index:
                continue
            for position, value in values.items():
                if id(value) in returned:
                    self.index[cls] = position
                    break

    def _cause(self, target, fields) -> str:
        if not fields:
            return (
                f"{type(self.model).__name__} returned no attention fields although capture asked for "
                "output_attentions=True; load it with attn_implementation='eager' and check that its forward "
                "honours output_attentions."
            )
        return (
            f"{target.name} ({type(target.module).__name__}) ran, but none of its outputs is among the "
            f"attention weights {type(self.model).__name__} returns "
            f"({', '.join(name for name, _ in fields)}), so they cannot be attributed to it; "
            "decorate the function that computes them with get_local('<name>')."
        )

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()


#: Which calls each field's tensors come from: (role, kind); None matches any role.
DECLARED = MappingProxyType(
    {
        "attentions": (None, "self"),
        "encoder_attentions": ("encoder", "self"),
        "decoder_attentions": ("decoder", "self"),
        "cross_attentions": (None, "cross"),
    }
)


def _by_position(calls, fields) -> dict:
    """``{id(call): tensor}`` for calls whose weights are not in the model's fields as they are (the
    model permuted or copied them): the n-th tensor of a field is the n-th call of the modules of its
    role and kind, in the order they ran, when the counts agree."""
    attributed = {}
    for name, tensors in fields:
        role, kind = DECLARED[name]
        mine = [call for call in calls if call[0].kind == kind and (role is None or call[0].role == role)]
        if len(mine) == len(tensors):
            for call, tensor in zip(mine, tensors):
                attributed[id(call)] = tensor
    return attributed


def _flat(output) -> dict:
    """``{position: tensor}`` of a module's output: a tensor, or tuples and lists of them two deep."""
    if not isinstance(output, (tuple, list)):
        return {(0,): output}
    flat = {}
    for i, value in enumerate(output):
        if isinstance(value, (tuple, list)):
            for j, inner in enumerate(value):
                flat[(i, j)] = inner
        else:
            flat[(i,)] = value
    return flat


def _fields(output, depth: int = 0) -> list[tuple[str, tuple]]:
    """The attention fields of a model output, those of nested outputs (CLIP-like models) included."""
    fields = []
    if not hasattr(output, "items"):
        return fields
    for name, value in output.items():
        if name in FIELDS and isinstance(value, (tuple, list)):
            fields.append((name, tuple(value)))
        elif hasattr(value, "items") and depth < 2:
            fields.extend(_fields(value, depth + 1))
    return fields


def _strip(output, depth: int = 0):
    """``output`` without the attention fields (nested outputs too) the caller did not ask for."""
    if not hasattr(output, "items") or not hasattr(output, "to_tuple"):
        return output
    kept = {}
    for name, value in output.items():
        if name in FIELDS:
            continue
        kept[name] = _strip(value, depth + 1) if hasattr(value, "items") and depth < 2 else value
    return type(output)(**kept)
