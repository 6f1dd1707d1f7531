"""The kernel source of attention events: each watched module's ``scaled_dot_product_attention`` calls.

While any module is watched, ``torch.nn.functional.scaled_dot_product_attention`` is a thin
wrapper: each call made inside a watched module's forward (the innermost watched module, in
the calling thread) becomes an :class:`~visualizer._adapters._events.AttentionCall` with the
queries, keys, mask, causality, scale and grouped-query flag the kernel got. With no editor
or gradient tap on the module, the original kernel then runs with the same arguments and its
output is returned untouched. With editors or taps (see ``_seam``), the event also carries
the values and the kernel's output split by head (the edit point): each editor may replace
it, and each tap sees its gradient during backward.

Every module that looks the function up on ``torch.nn.functional`` at call time is seen
(timm's ``F.scaled_dot_product_attention``, transformers' ``sdpa_attention_forward``, torch's
own ``multi_head_attention_forward``); a module holding its own reference is not, and its
call ends with no event, which :func:`watch`'s ``done`` reports.

At the end of each watched forward, ``done(target, calls)`` gets the list of events of the
calls it made, each reported for that target.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from visualizer._adapters._events import AttentionCall

__all__ = ["not_one_call", "watch"]

_LOCK = threading.RLock()
_STATE = threading.local()  # .stack: [[listeners, calls], ...] of the forwards running in this thread
_WATCHED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # module -> _Module
_installed: list = []  # [original function] while the wrapper is in place


class _Listener(NamedTuple):
    target: Any
    done: Callable[[Any, list], None]
    editors: tuple
    taps: tuple


def watch(
    target, module, done: Callable[[Any, list], None], *, editors: Sequence = (), taps: Sequence = ()
) -> Callable[[], None]:
    """Watch ``module``'s forward for ``target``: ``done(target, calls)`` after each forward, with
    ``editors`` and gradient ``taps`` acting on each kernel call (see ``_events``).

    Returns the function that stops watching."""
    entry = _Listener(target, done, tuple(editors), tuple(taps))
    with _LOCK:
        watched = _WATCHED.get(module)
        if watched is None:
            watched = _WATCHED[module] = _Module(module)
        watched.listeners = (*watched.listeners, entry)
        _install()
    removed = False

    def unwatch() -> None:
        nonlocal removed
        with _LOCK:
            if removed:
                return
            removed = True
            watched.listeners = tuple(listener for listener in watched.listeners if listener is not entry)
            if not watched.listeners:
                watched.close()
                if _WATCHED.get(module) is watched:
                    del _WATCHED[module]
            if not _WATCHED:
                _uninstall()

    return unwatch


class _Module:
    """The one pair of hooks on a watched module, serving every capture and seam watching it."""

    __slots__ = ("__weakref__", "groups", "handles", "heads", "listeners")

    def __init__(self, module) -> None:
        self.listeners: tuple = ()
        self.heads, self.groups = _declared_heads(module)
        self.handles = (
            module.register_forward_pre_hook(self.before),
            module.register_forward_hook(self.after, always_call=True),
        )

    def before(self, module, args) -> None:
        if self.listeners:
            _stack().append([self, self.listeners, []])

    def after(self, module, args, output) -> None:
        stack = _stack()
        if not stack:
            return
        _, listeners, calls = stack.pop()
        if output is None:  # the forward raised: nothing to report
            return
        for listener in listeners:
            listener.done(listener.target, [call.for_target(listener.target) for call in calls])

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()


def _declared_heads(module) -> tuple[int | None, int]:
    """The module's query heads and query heads per key head, where it declares them."""
    heads = getattr(module, "num_heads", None) or getattr(
        getattr(module, "config", None), "num_attention_heads", None
    )
    groups = getattr(module, "num_key_value_groups", 1)
    return (
        heads if isinstance(heads, int) and not isinstance(heads, bool) else None,
        groups if isinstance(groups, int) and groups > 0 else 1,
    )


def _stack() -> list:
    stack = getattr(_STATE, "stack", None)
    if stack is None:
        stack = _STATE.stack = []
    return stack


def _install() -> None:
    import torch.nn.functional as F

    if _installed:
        return
    original = F.scaled_dot_product_attention

    def scaled_dot_product_attention(
        query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False
    ):
        stack = getattr(_STATE, "stack", None)
        if not stack:
            return original(
                query,
                key,
                value,
                attn_mask=attn_mask,
                dropout_p=dropout_p,
                is_causal=is_causal,
                scale=scale,
                enable_gqa=enable_gqa,
            )
        watched, listeners, calls = stack[-1]
        editors = tuple(editor for listener in listeners for editor in listener.editors)
        taps = tuple(tap for listener in listeners for tap in listener.taps)
        call = AttentionCall(
            listeners[0].target,
            "kernel",
            query=query,
            key=key,
            value=value if editors or taps else None,  # held only where a subscriber acts on it
            masks=() if attn_mask is None else (attn_mask,),
            is_causal=bool(is_causal),
            scale=scale,
            dropout=float(dropout_p or 0.0),
            enable_gqa=bool(enable_gqa),
            heads=watched.heads,
            groups=watched.groups,
        )
        calls.append(call)
        if not editors and not taps:
            return original(
                query,
                key,
                value,
                attn_mask=attn_mask,
                dropout_p=dropout_p,
                is_causal=is_causal,
                scale=scale,
                enable_gqa=enable_gqa,
            )
        if any(tap.detach_scores for tap in taps):
            query, key = query.detach(), key.detach()
        output = original(
            query,
            key,
            value,
            attn_mask=attn_mask,
            dropout_p=dropout_p,
            is_causal=is_causal,
            scale=scale,
            enable_gqa=enable_gqa,
        )
        return _act(call, output, editors, taps)

    scaled_dot_product_attention.__wrapped__ = original  # type: ignore[attr-defined]
    scaled_dot_product_attention.__doc__ = original.__doc__
    F.scaled_dot_product_attention = scaled_dot_product_attention
    _installed.append((original, scaled_dot_product_attention))


def _uninstall() -> None:
    import torch.nn.functional as F

    if not _installed:
        return
    original, wrapper = _installed.pop()
    if F.scaled_dot_product_attention is wrapper:
        F.scaled_dot_product_attention = original
    # (another tool that wrapped it after us keeps its wrapper, which calls ours, which still works)


def _act(call: AttentionCall, output, editors: tuple, taps: tuple):
    """The kernel's ``output`` after the editors, with the gradient taps on it."""
    heads = _per_head(call, output)
    call.output = heads
    for editor in editors:
        replaced = editor.edit(call)
        if replaced is None:
            continue
        if (
            getattr(replaced, "shape", None) != heads.shape
            or replaced.dtype != heads.dtype
            or replaced.device != heads.device
        ):
            raise ValueError(
                f"{type(editor).__name__}.edit returned {_describe(replaced)} for {call.target.name}; "
                f"it must return a tensor shaped like call.output, {tuple(heads.shape)}, {heads.dtype} on "
                f"{heads.device}, or None to keep it"
            )
        call.output = replaced
    if taps and call.output.requires_grad:
        call.output.register_hook(_tap_hook(call, taps))
    if call.output is heads and heads is output:
        return output
    return call.output.reshape(output.shape)


def _tap_hook(call: AttentionCall, taps: tuple):
    def hook(grad) -> None:
        for tap in taps:
            tap.gradient(call, grad)

    return hook


def _per_head(call: AttentionCall, output):
    """The kernel's output as (batch, heads, queries, head dim): unpacked where transformers folded
    a grouped-query decoding step's heads into query positions."""
    if output.dim() != 4:
        raise ValueError(
            f"{call.target.name} called scaled_dot_product_attention with {output.dim()}-D tensors, "
            "batch and heads folded together, so its output cannot be split by head for an editor or "
            "gradient tap"
        )
    if call.packed:
        return output.reshape(output.shape[0], call.heads, 1, output.shape[-1])
    return output


def _describe(value) -> str:
    shape = getattr(value, "shape", None)
    return f"a {type(value).__name__}" + (f" of shape {tuple(shape)}" if shape is not None else "")


def not_one_call(name: str, calls: int) -> str:
    """Why a watched module's call gave no recipe: it made ``calls`` kernel calls, not one."""
    what = "made no call to" if calls == 0 else f"made {calls} calls to"
    return (
        f"{name} {what} torch.nn.functional.scaled_dot_product_attention in one forward, so its map "
        "cannot be rebuilt from the kernel's inputs. Fix: capture_attention(model, lazy=False)."
    )
