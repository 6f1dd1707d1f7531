"""What each watched attention module hands ``scaled_dot_product_attention``, per call.

While any module is watched, ``torch.nn.functional.scaled_dot_product_attention`` is a thin
wrapper: it notes the queries, keys, mask, causality, scale and grouped-query flag of each
call made inside a watched module's forward (the innermost watched module, in the calling
thread), then runs the original kernel with the same arguments, so outputs are unchanged.
Every module that looks the function up on ``torch.nn.functional`` at call time is seen
(timm's ``F.scaled_dot_product_attention``, transformers' ``sdpa_attention_forward``, torch's
own ``multi_head_attention_forward``); a module holding its own reference is not, and its
call ends with no recipe, which :func:`watch`'s ``done`` reports.

At the end of each watched forward, ``done(target, calls)`` gets the list of
``(query, key, attn_mask, dropout_p, is_causal, scale, enable_gqa)`` calls it made.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable

__all__ = ["Call", "not_one_call", "recipe", "watch"]

#: (query, key, attn_mask, dropout_p, is_causal, scale, enable_gqa) of one kernel call.
Call = tuple

_LOCK = threading.RLock()
_STATE = threading.local()  # .stack: [[watchers, calls], ...] of the forwards running in this thread
_WATCHED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # module -> _Module
_installed: list = []  # [original function] while the wrapper is in place


def watch(target, module, done: Callable[[object, list], None]) -> Callable[[], None]:
    """Watch ``module``'s forward for ``target``: ``done(target, calls)`` after each call.

    Returns the function that stops watching."""
    entry = (target, done)
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
            watched.listeners = tuple(pair for pair in watched.listeners if pair is not entry)
            if not watched.listeners:
                watched.close()
                if _WATCHED.get(module) is watched:
                    del _WATCHED[module]
            if not _WATCHED:
                _uninstall()

    return unwatch


class _Module:
    """The one pair of hooks on a watched module, serving every capture watching it."""

    __slots__ = ("__weakref__", "handles", "listeners")

    def __init__(self, module) -> None:
        self.listeners: tuple = ()
        self.handles = (
            module.register_forward_pre_hook(self.before),
            module.register_forward_hook(self.after, always_call=True),
        )

    def before(self, module, args) -> None:
        if self.listeners:
            _stack().append([self.listeners, []])

    def after(self, module, args, output) -> None:
        stack = _stack()
        if not stack:
            return
        listeners, calls = stack.pop()
        if output is None:  # the forward raised: nothing to report
            return
        for target, done in listeners:
            done(target, calls)

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()


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
        if stack:
            stack[-1][1].append((query, key, attn_mask, dropout_p, is_causal, scale, enable_gqa))
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


def recipe(call: Call, *, heads: int | None = None, groups: int = 1):
    """The :class:`~visualizer._lazy.Recipe` of one kernel call.

    ``heads`` and ``groups`` are the module's query heads and query heads per key head, where
    it declares them (transformers' ``num_key_value_groups``): keys repeated for the kernel
    (``repeat_kv``) are kept once per key head, and a grouped-query decoding step whose heads
    were folded into query positions (transformers' ``pack_gqa``) is marked as packed.
    """
    import torch

    from visualizer._lazy import Recipe

    query, key, mask, dropout, causal, scale, _enable_gqa = call
    if query.dim() == 3 and key.dim() == 3:  # (batch x heads, tokens, head dim), as timm's SAM blocks
        query, key = query.unsqueeze(0), key.unsqueeze(0)
    packed = False
    if groups > 1 and query.shape[1] == key.shape[1]:
        if heads is not None and query.shape[1] * groups == heads and query.shape[2] == groups:
            packed = True
        elif query.shape[1] % groups == 0 and _repeated(key, groups):
            key = key[:, ::groups].contiguous()
    return Recipe(
        query,
        key,
        (mask,) if isinstance(mask, torch.Tensor) else (),
        causal=bool(causal),
        scale=scale,
        packed=packed,
        dropout=float(dropout or 0.0),
    )


def _repeated(key, groups: int) -> bool:
    """Whether each run of ``groups`` consecutive heads of ``key`` repeats one head (repeat_kv)."""
    import torch

    batch, heads, tokens, dim = key.shape
    runs = key.reshape(batch, heads // groups, groups, tokens, dim)
    return bool(torch.equal(runs, runs[:, :, :1].expand_as(runs)))


def not_one_call(name: str, calls: int) -> str:
    """Why a watched module's call gave no recipe: it made ``calls`` kernel calls, not one."""
    what = "made no call to" if calls == 0 else f"made {calls} calls to"
    return (
        f"{name} {what} torch.nn.functional.scaled_dot_product_attention in one forward, so its map "
        "cannot be rebuilt from the kernel's inputs. Fix: capture_attention(model, lazy=False)."
    )
