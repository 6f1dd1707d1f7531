"""One attention call, one event: what every adapter hands its subscribers, whatever the kernel.

An :class:`AttentionCall` is made for each attention call an adapter sees. It carries the
target (the module and the structure its framework declares) and, by source:

- ``"kernel"``: a ``scaled_dot_product_attention`` call inside the module (timm's fused path,
  transformers' ``sdpa``, torch's ``multi_head_attention_forward``): the queries, keys and
  values as the kernel got them, its mask, ``is_causal``, scale, dropout and grouped-query
  layout, and the kernel's output, split by head (the *edit point*);
- ``"inputs"``: the queries and keys ``nn.MultiheadAttention`` projects with its own
  weights, and the masks it was given, while its fused fast path runs untouched;
- ``"eager"`` and ``"local"``: the probabilities as the module computed them (an eager
  attention's returned weights, or the local variable a get_local tap read);
- ``"projection"``: a call known only at its edit point (an eager path seen by an editor).

The *edit point* of a call is the input of its output projection, split by head,
(batch, heads, queries, head dim): where one head's contribution to the module's output can
be changed alone (zeroing it there is zero-ablating the head). Each adapter says where it is
for a target (:class:`EditPoint`), or why it has none.

Three kinds of subscriber read the events through one protocol each:

- a :class:`Recorder` (the capture) is told when a target's forward starts, gets each
  finished call, and hears why a call gave nothing;
- an :class:`Editor` may replace the per-head output at the edit point;
- a :class:`GradientTap` sees the gradient of that output during backward, and may ask the
  kernel to run on detached queries and keys (the output is unchanged; gradients then flow
  only through the values).

``visualizer._adapters._seam`` attaches editors and gradient taps.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Protocol

from visualizer._structure import Layout

__all__ = ["SOURCES", "AttentionCall", "EditPoint", "Editor", "GradientTap", "Recorder"]

#: Where an event's map comes from; see the module docstring.
SOURCES = ("kernel", "inputs", "eager", "local", "projection")


@dataclasses.dataclass(eq=False)
class AttentionCall:
    """One attention call of one target, as every adapter reports it.

    ``probabilities`` holds the map where the module computed it (sources ``eager`` and
    ``local``); otherwise ``query`` and ``key`` (batch, heads, queries, head dim), with
    ``masks`` (added or boolean, as the kernel takes them), ``is_causal``, ``scale`` and
    ``dropout``, define it, and :meth:`recipe` keeps them; ``value`` is kept where a subscriber
    acts on the call. ``output`` is the per-head output at the edit point, (batch, heads,
    queries, head dim), set when the call reaches it with an editor or tap attached.
    ``eager_because`` says why a call of a lazy target was computed eagerly.
    """

    target: Any
    source: str
    layout: Layout | None = None
    probabilities: Any = None
    query: Any = None
    key: Any = None
    value: Any = None
    masks: tuple = ()
    is_causal: bool = False
    scale: float | None = None
    dropout: float = 0.0
    enable_gqa: bool = False
    #: the module's query heads and query heads per key head, where it declares them
    heads: int | None = None
    groups: int = 1
    output: Any = None
    eager_because: str | None = None

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"AttentionCall.source must be one of {SOURCES}, not {self.source!r}")

    def __repr__(self) -> str:
        return f"<AttentionCall {self.target.name!r} from {self.source}>"

    def for_target(self, target) -> AttentionCall:
        """The same call, reported to another capture's target of the same module."""
        return self if target is self.target else dataclasses.replace(self, target=target)

    @property
    def packed(self) -> bool:
        """Whether a grouped-query decoding step folded the query heads into query positions
        (transformers' ``pack_gqa``): (batch, key heads, groups, head dim) for one query."""
        query, key = self.query, self.key
        return (
            self.groups > 1
            and query is not None
            and query.dim() == 4
            and query.shape[1] == key.shape[1]
            and self.heads is not None
            and query.shape[1] * self.groups == self.heads
            and query.shape[2] == self.groups
        )

    def recipe(self):
        """The :class:`~visualizer._lazy.Recipe` that rebuilds this call's map from what defines it.

        Keys repeated for the kernel (``repeat_kv``) are kept once per key head; a packed
        grouped-query decoding step is marked as packed.
        """
        import torch

        from visualizer._lazy import Recipe

        if self.query is None or self.key is None:
            raise ValueError(f"{self!r} carries computed probabilities, not the queries and keys of a recipe")
        query, key = self.query, self.key
        if query.dim() == 3 and key.dim() == 3:  # (batch x heads, tokens, head dim), as timm's SAM blocks
            query, key = query.unsqueeze(0), key.unsqueeze(0)
        packed = self.packed
        groups = self.groups
        if not packed and groups > 1 and query.shape[1] == key.shape[1] and query.shape[1] % groups == 0:
            if _repeated(key, groups):
                key = key[:, ::groups].contiguous()
        return Recipe(
            query,
            key,
            tuple(mask for mask in self.masks if isinstance(mask, torch.Tensor)),
            causal=bool(self.is_causal),
            scale=self.scale,
            packed=packed,
            dropout=float(self.dropout or 0.0),
        )


def _repeated(key, groups: int) -> bool:
    """Whether each run of ``groups`` consecutive heads of ``key`` repeats one head (repeat_kv)."""
    import torch

    batch, heads, tokens, dim = key.shape
    runs = key.reshape(batch, heads // groups, groups, tokens, dim)
    return bool(torch.equal(runs, runs[:, :, :1].expand_as(runs)))


@dataclasses.dataclass(frozen=True)
class EditPoint:
    """Where a target's per-head output can be changed: the input of ``projection``, the module
    its output projection is (a ``Linear``, or transformers' ``Conv1D``), whose last dimension
    holds ``heads`` heads one after another; or, with ``projection`` None, the output of its
    ``scaled_dot_product_attention`` call, (batch, heads, queries, head dim), where the module
    applies its projection through its weights (``nn.MultiheadAttention``). ``kernel``: the
    module's attention runs in that kernel on its default path, so gradient taps may detach
    its queries and keys. ``prepare()``, where given, changes what the module needs changed
    while editors act on it (its path) and returns the function that puts it back."""

    projection: Any
    heads: int
    kernel: bool = True
    prepare: Callable[[], Callable[[], None]] | None = None


class Recorder(Protocol):
    """What adapters report to, for each target (the capture is one)."""

    def ran(self, target: Any) -> None:
        """The target's forward started."""

    def record(self, call: AttentionCall) -> None:
        """One finished call of ``call.target``; its map is ``call.probabilities`` or, for a lazy
        target, ``call.recipe()``. ``call.layout`` is the call's own (windows), else None."""

    def missing(self, target: Any, cause: str) -> None:
        """A call produced no map; ``cause`` says why and how to fix it."""


class Editor(Protocol):
    """Changes what one attention call hands its output projection."""

    def edit(self, call: AttentionCall) -> Any:
        """A replacement for ``call.output`` (same shape, dtype and device), or None to keep it."""


class GradientTap(Protocol):
    """Sees the gradient of a call's per-head output during backward."""

    #: Run the kernel on detached queries and keys: the output is unchanged, and gradients
    #: flow only through the values.
    detach_scores: bool

    def gradient(self, call: AttentionCall, grad: Any) -> None:
        """``grad`` is the gradient of ``call.output``, (batch, heads, queries, head dim)."""
