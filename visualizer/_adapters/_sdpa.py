"""The kernel source of attention events: each watched module's ``scaled_dot_product_attention`` calls.

While any module is watched, ``torch.nn.functional.scaled_dot_product_attention`` is a thin
wrapper: each call made inside a watched module's forward (the innermost watched module, in
the calling thread) becomes an :class:`~visualizer._adapters._events.AttentionCall` with the
queries, keys, mask, causality, scale and grouped-query flag the kernel got; a subscriber that
acts on calls (``_seam``) gets it as the call is made, with the values too. The original
kernel then runs with the same arguments, on detached queries and keys where a gradient tap
asks for that, and its output is returned untouched.

Every module that looks the function up on ``torch.nn.functional`` at call time is seen
(timm's ``F.scaled_dot_product_attention``, transformers' ``sdpa_attention_forward``, torch's
own ``multi_head_attention_forward``); a module holding its own reference is not, and its
call ends with no event, which :func:`watch`'s ``done`` reports.

At the end of each watched forward, ``done(target, calls)`` gets the list of events of the
calls it made, each reported for that target.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from visualizer._adapters._events import AttentionCall
from visualizer._sessions import SESSIONS

__all__ = ["not_one_call", "watch"]

#: The names of this module's parts in the registry of sessions (``visualizer._sessions``): a
#: watched module's hooks, the process-wide wrapper, and the per-thread stack of running
#: watched forwards ([watched, listeners, calls], ...).
PART, WRAPPER, STACK = "kernel", "sdpa wrapper", "sdpa_stack"


class _Listener(NamedTuple):
    target: Any
    done: Callable[[Any, list], None]
    on_call: Callable[[AttentionCall], None] | None
    on_output: Callable[[AttentionCall, Any], Any] | None
    detach_scores: bool


def watch(
    target,
    module,
    done: Callable[[Any, list], None],
    *,
    on_call: Callable[[AttentionCall], None] | None = None,
    on_output: Callable[[AttentionCall, Any], Any] | None = None,
    detach_scores: bool = False,
) -> Callable[[], None]:
    """Watch ``module``'s forward for ``target``: ``done(target, calls)`` after each forward;
    ``on_call(call)`` as each kernel call is made (its event then holds the values too);
    ``on_output(call, output)`` with the kernel's output, returning what the caller gets; with
    ``detach_scores``, the kernel runs on detached queries and keys.

    Returns the function that stops watching."""
    entry = _Listener(target, done, on_call, on_output, detach_scores)
    with SESSIONS.lock:
        watched = SESSIONS.part(module, PART, lambda: _Module(module))
        watched.listeners = (*watched.listeners, entry)
        release = SESSIONS.acquire(WRAPPER, _install)
    removed = False

    def unwatch() -> None:
        nonlocal removed
        with SESSIONS.lock:
            if removed:
                return
            removed = True
            watched.listeners = tuple(listener for listener in watched.listeners if listener is not entry)
            if not watched.listeners:
                watched.close()
                SESSIONS.drop(module, PART, watched)
            release()

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
    stack = getattr(SESSIONS.local, STACK, None)
    if stack is None:
        stack = []
        setattr(SESSIONS.local, STACK, stack)
    return stack


def _event(frame: list, query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa):
    """The event of one kernel call in the watched forward ``frame``, kept for its listeners and
    handed to those that act on calls as it is made; returns it with those listeners."""
    watched, listeners, calls = frame
    acting = tuple(
        listener for listener in listeners if listener.on_call is not None or listener.on_output is not None
    )
    call = AttentionCall(
        listeners[0].target,
        "kernel",
        query=query,
        key=key,
        value=value if acting else None,  # held only where a subscriber acts on it
        masks=() if attn_mask is None else (attn_mask,),
        is_causal=bool(is_causal),
        scale=scale,
        dropout=float(dropout_p or 0.0),
        enable_gqa=bool(enable_gqa),
        heads=watched.heads,
        groups=watched.groups,
    )
    calls.append(call)
    for listener in acting:
        if listener.on_call is not None:
            listener.on_call(call.for_target(listener.target))
    return call, acting


def _install() -> Callable[[], None]:
    """Put the wrapper in place; returns the function that takes it out."""
    import torch.nn.functional as F

    original = F.scaled_dot_product_attention
    local = SESSIONS.local

    def scaled_dot_product_attention(
        query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False
    ):
        stack = getattr(local, STACK, None)
        call, acting = None, ()
        if stack:  # inside a watched module's forward: the call becomes its event
            call, acting = _event(
                stack[-1], query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa
            )
            if any(listener.detach_scores for listener in stack[-1][1]):
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
        for listener in acting:
            if listener.on_output is not None:
                output = listener.on_output(call.for_target(listener.target), output)
        return output

    scaled_dot_product_attention.__wrapped__ = original  # type: ignore[attr-defined]
    scaled_dot_product_attention.__doc__ = original.__doc__
    F.scaled_dot_product_attention = scaled_dot_product_attention

    def uninstall() -> None:
        if F.scaled_dot_product_attention is scaled_dot_product_attention:
            F.scaled_dot_product_attention = original
        # (another tool that wrapped it after us keeps its wrapper, which calls ours, which still works)

    return uninstall


def not_one_call(name: str, calls: int) -> str:
    """Why a watched module's call gave no recipe: it made ``calls`` kernel calls, not one."""
    what = "made no call to" if calls == 0 else f"made {calls} calls to"
    return (
        f"{name} {what} torch.nn.functional.scaled_dot_product_attention in one forward, so its map "
        "cannot be rebuilt from the kernel's inputs. Fix: capture_attention(model, lazy=False)."
    )
