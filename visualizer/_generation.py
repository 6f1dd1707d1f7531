"""Attention during generation: keys kept once per layer, and the steps stitched into one map.

With a KV cache, ``model.generate`` calls every attention module once per step: the first
call (the prefill) has every prompt query, each later step a few more query rows (usually
one) and the keys of every token so far. Two things follow.

Keeping: a rebuilt call keeps its queries and keys (:class:`~visualizer._lazy.Recipe`); kept
as they come, the keys of step ``t`` repeat those of every step before it, which is
quadratic in the steps. :func:`share_keys` keeps them once: when a call of a layer is
recorded, its keys are compared with the layer's :class:`KeyStore` (``torch.equal`` on the
whole overlapping prefix, not a sample), and where they extend it only the new keys are
appended; the recipe then references the store and its length. Where they do not (another
input, a sliding-window or rolling cache that dropped keys, other shapes, keys that carry
an autograd graph) the call's keys are kept whole and start a new store.

Stitching: :func:`generation` places every call of a layer in one causal map of the whole
run, (batch, heads, total, total), total being the queries computed (prompt plus the
generated tokens that were fed back): call ``c`` fills its own query rows, in order, and the
key columns it saw; the columns beyond them are zero. A static cache hands the kernel all its
slots at every step, the unwritten ones masked: they are checked to get no weight and cut.

Costs and limits: the prefix check reads the kept keys once per call (as the kernel does), and
on a GPU waits for its result (one synchronisation per layer and step). Keys with an autograd
graph are kept per step. With beam search the cache is reordered between steps, so the check
fails where beams swap (those steps keep their keys whole), and the stitched map's batch rows
are beam slots, step by step, as ``output_attentions`` gives them, not each beam's history.
"""

from __future__ import annotations

from typing import Any

__all__ = ["KeyStore", "generation", "runs", "share_keys"]


class KeyStore:
    """The keys of consecutive calls of one layer, each call's keys a prefix of the next's.

    Kept in one buffer grown by doubling (at most twice the keys held), so that the view of
    the first ``length`` keys is a slice, never a copy.
    """

    __slots__ = ("buffer", "length")

    def __init__(self, key: Any) -> None:
        self.buffer, self.length = key, key.shape[2]

    def view(self, length: int):
        return self.buffer[:, :, :length]

    def extended_by(self, key: Any) -> bool:
        """Whether ``key`` is the store's keys followed by more (or none): same batch, heads,
        head dim, dtype and device, and equal on all of the store's keys."""
        import torch

        held = self.view(self.length)
        if (
            key.dtype != held.dtype
            or key.device != held.device
            or key.shape[:2] != held.shape[:2]
            or key.shape[3] != held.shape[3]
            or key.shape[2] < self.length
        ):
            return False
        # the first key row first: another input (a new forward) differs there, and the whole
        # prefix is read only where it may extend the store
        return bool(torch.equal(key[:, :, :1], held[:, :, :1])) and bool(
            torch.equal(key[:, :, : self.length], held)
        )

    def append(self, key: Any) -> None:
        """Keep ``key``'s keys beyond the store's (``key`` extends the store)."""
        import torch

        total = key.shape[2]
        if total == self.length:
            return
        if total > self.buffer.shape[2]:
            capacity = max(total, 2 * self.buffer.shape[2])
            batch, heads, _, dim = self.buffer.shape
            buffer = torch.empty((batch, heads, capacity, dim), dtype=key.dtype, device=key.device)
            buffer[:, :, : self.length] = self.view(self.length)
            self.buffer = buffer
        self.buffer[:, :, self.length : total] = key[:, :, self.length :]
        self.length = total


def share_keys(store: KeyStore | None, recipe: Any) -> tuple[KeyStore | None, Any]:
    """``(store, recipe)`` after keeping one call's recipe: the recipe references ``store``
    when its keys extend the layer's store, else a new store made of its own keys. Keys that
    carry an autograd graph (``keep_grad``) are kept as they are and the store is unchanged."""
    key = recipe.key
    if key.requires_grad:
        return store, recipe
    if store is not None and store.extended_by(key):
        store.append(key)
    else:
        store = KeyStore(key)
    return store, recipe.share(store, key.shape[2])


def runs(shapes: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Split a layer's calls, given as (queries, keys) each, into generation runs: ``[(first
    call, end), ...]``. The first call, and each later call with no past keys (as many keys as
    queries), starts a run; each later call of the run must see every token so far: its keys are
    the queries computed up to and including it, or more (a static cache hands the kernel all its
    slots, the unwritten ones masked; :func:`generation` checks that they get no weight).
    Otherwise ValueError says which call does not. (A static cache's prefill with a mask has all
    the slots too, so a second run of a static cache in the same calls is not told apart when
    its slots outnumber the tokens so far: capture one such run at a time.)"""
    found: list[tuple[int, int]] = []
    total = 0
    for call, (queries, keys) in enumerate(shapes):
        if keys < queries:
            raise ValueError(
                f"call {call} has {queries} queries but only {keys} keys: not a causal self-attention step"
            )
        if keys == queries or not found:
            if found:
                found[-1] = (found[-1][0], call)
            found.append((call, len(shapes)))
            total = queries
            continue
        total += queries
        if keys < total:
            raise ValueError(
                f"call {call} sees {keys} keys, but the calls of its run computed {total} queries up to "
                "it: the calls are not one generation run with a growing KV cache (a sliding-window or "
                "rolling cache drops keys, which a causal map of the run cannot place)"
            )
    return found


def generation(
    calls: list,
    rows: Any = None,
    heads: Any = None,
    run: int | None = None,
    *,
    path: str = "",
    kind: str = "self",
    dropped: int = 0,
):
    """One causal map of a generation run from a layer's calls (maps or Recipes, each
    (batch, heads, queries, keys)): (batch, heads, total, total), or (batch, heads, len(rows),
    total) for the query rows ``rows`` of the run (an int, a slice, a list or a 1-D tensor),
    building only the calls those rows fall in. ``heads`` selects heads (same forms); ``run``
    which run, where the calls hold several (a call with no past keys starts one). path, kind
    and dropped describe the layer for the errors: its module path, ``"self"`` or ``"cross"``,
    and how many of its oldest calls ``max_calls`` dropped."""
    import torch

    from visualizer._lazy import Recipe, query_positions

    if kind == "cross":
        raise ValueError(
            f"{path!r} is cross-attention: its keys are the encoder's tokens, not the run's, so there "
            f"is no causal map of the run; read its steps with maps.calls({path!r})"
        )
    shapes = [tuple(call.shape) for call in calls]
    if any(len(shape) != 4 for shape in shapes):
        raise ValueError(f"generation() needs (batch, heads, queries, keys) maps, not {shapes}")
    dropped_hint = (
        f"max_calls dropped the {dropped} oldest call(s) of {path!r}; capture with a larger max_calls "
        "(or None) to keep the whole run"
    )
    if dropped and shapes and shapes[0][2] != shapes[0][3]:
        raise ValueError(
            f"the first call kept ({shapes[0][2]} queries, {shapes[0][3]} keys) does not start a run: "
            + dropped_hint
        )
    try:
        found = runs([(shape[2], shape[3]) for shape in shapes])
    except ValueError as exc:
        if not dropped:
            raise
        raise ValueError(f"{path!r}: {exc}. {dropped_hint}") from None
    if run is None:
        if len(found) > 1:
            raise ValueError(
                f"the calls hold {len(found)} generation runs (calls {[start for start, _ in found]} start "
                "one each); say which with run=i (negative counts from the last)"
            )
        chosen = found[0]
    else:
        if isinstance(run, bool) or not isinstance(run, int):
            raise TypeError(f"run must be an int, not {type(run).__name__}")
        if not -len(found) <= run < len(found):
            raise IndexError(f"run {run} is out of range: the calls hold {len(found)} run(s)")
        chosen = found[run]
    first, end = chosen
    selected = calls[first:end]
    batch, n_heads = shapes[first][:2]
    for call, shape in enumerate(shapes[first:end], first):
        if shape[:2] != (batch, n_heads):
            raise ValueError(
                f"call {call} has batch and heads {shape[:2]}, the run's first call {(batch, n_heads)}"
            )
    starts, total = [], 0
    for shape in shapes[first:end]:
        starts.append(total)
        total += shape[2]
    sample = selected[0]
    device = sample.device
    positions = query_positions(slice(None) if rows is None else rows, total, device)
    head_index = None if heads is None else query_positions(heads, n_heads, device, "head")
    out_heads = n_heads if head_index is None else len(head_index)
    out = torch.zeros((batch, out_heads, len(positions), total), dtype=sample.dtype, device=device)
    for index, (value, start) in enumerate(zip(selected, starts, strict=True)):
        queries, keys = (value.shape[2], value.shape[3])
        inside = (positions >= start) & (positions < start + queries)
        if not bool(inside.any()):
            continue
        where = torch.nonzero(inside).reshape(-1)
        local = positions[where] - start
        if isinstance(value, Recipe):
            block = value.rows(local, head_index)
        else:
            block = value.index_select(2, local.to(value.device))
            if head_index is not None:
                block = block.index_select(1, head_index.to(value.device))
        if keys > total:  # a static cache's slots beyond the run's tokens: never written, masked
            if block[..., total:].any():
                raise ValueError(
                    f"call {first + index} gives weight to keys beyond the run's {total} "
                    "tokens: its keys are not the run's tokens in order"
                )
            block, keys = block[..., :total], total
        out[:, :, where, :keys] = block.to(device=device, dtype=out.dtype)
    return out
