"""Attention maps kept as what defines them, and rebuilt exactly on demand.

A fused kernel (``scaled_dot_product_attention``'s flash, memory-efficient or CPU kernels)
never materialises the map, yet the map is a pure function of what the kernel received:

    softmax(scale * q @ k^T + bias)          bias: the causal mask, the masks, -inf where masked

A :class:`Recipe` keeps exactly that (queries, keys, masks, causality, scale, grouped-query
heads) for one call of one attention module, in linear memory, and rebuilds the map, any
rows of it, or one block of rows at a time, with the semantics of
``torch.nn.functional.scaled_dot_product_attention``:

- ``scale`` None means ``1 / sqrt(head dim)``;
- ``causal`` is aligned to the top left (query i sees keys 0..i), as sdpa's ``is_causal``;
- each mask broadcasts to (batch, heads, queries, keys): a bool mask keeps where True, a
  float mask is added to the scores;
- keys with fewer heads than queries serve ``heads // key heads`` consecutive query heads
  (sdpa's ``enable_gqa``, transformers' ``repeat_kv``);
- a row with every key masked is zero (what the fused kernels return; torch's math path
  does the same since 2.5).

Rebuilding runs in blocks of query rows, each holding at most (batch, heads, rows, keys)
scores, with the keys cut to those some row of the block can see (the causal prefix, a
sliding window, padding), on the device the queries are on.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from visualizer._validate import positions

__all__ = ["BLOCK_ROWS", "Recipe", "query_positions"]

#: Query rows per block when rebuilding (scores of one block: batch x heads x rows x keys).
BLOCK_ROWS = 256


class Recipe:
    """What defines one call's attention map; see the module docstring.

    query: (batch, heads, queries, head dim); key: (batch, key heads, keys, head dim), key
    heads dividing heads; masks: a tuple of bool (keep where True) or additive float tensors,
    each broadcastable to (batch, heads, queries, keys); causal: sdpa's ``is_causal``;
    scale: sdpa's ``scale``; packed: transformers' grouped-query decoding step (one query
    token whose heads were folded into the query positions): the map is then unfolded to
    (batch, heads, 1, keys); dropout: the dropout probability the kernel applied (the map
    rebuilt is the probabilities before dropout).

    The keys may live in a store shared with other calls of the layer (the KV cache of a
    generation: each step's keys extend the previous step's); see :meth:`share`. ``key`` is
    then a view of the store's first ``length`` keys, and the recipe rebuilds the same map.
    """

    __slots__ = ("__weakref__", "_key", "_shared", "causal", "dropout", "masks", "packed", "query", "scale")
    _key: Any
    _shared: tuple[Any, int] | None  # (store, length) where the keys are shared with other calls

    def __init__(
        self,
        query: Any,
        key: Any,
        masks: tuple = (),
        *,
        causal: bool = False,
        scale: float | None = None,
        packed: bool = False,
        dropout: float = 0.0,
    ) -> None:
        if query.dim() != 4 or key.dim() != 4:
            raise ValueError(
                f"a recipe needs (batch, heads, tokens, head dim) queries and keys, not {tuple(query.shape)} "
                f"and {tuple(key.shape)}"
            )
        if query.shape[1] % key.shape[1] or query.shape[-1] != key.shape[-1]:
            raise ValueError(
                f"queries {tuple(query.shape)} and keys {tuple(key.shape)} do not pair: key heads must "
                "divide query heads and the head dims must agree"
            )
        self.query, self.key = query, key
        self.masks = tuple(_as_4d(mask) for mask in masks if mask is not None)
        self.causal, self.scale, self.packed, self.dropout = bool(causal), scale, packed, float(dropout)

    @property
    def key(self):
        """The keys, (batch, key heads, keys, head dim)."""
        shared = self._shared
        return self._key if shared is None else shared[0].view(shared[1])

    @key.setter
    def key(self, value) -> None:
        self._key, self._shared = value, None

    def share(self, store: Any, length: int) -> Recipe:
        """A copy whose keys are the first ``length`` keys of ``store`` (an object whose
        ``view(length)`` gives them, (batch, key heads, length, head dim)), in place of its own;
        they must be the same keys (the caller checks)."""
        recipe = self.to()
        recipe._key, recipe._shared = None, (store, int(length))
        return recipe

    # -- what it describes ----------------------------------------------------------------

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """(batch, heads, queries, keys) of the map."""
        batch, heads, queries, _ = self.query.shape
        if self.packed:
            return batch, heads * queries, 1, self.key.shape[2]
        return batch, heads, queries, self.key.shape[2]

    @property
    def device(self):
        return self.query.device

    @property
    def dtype(self):
        """The dtype of the maps rebuilt: the queries' (they are computed in at least float32)."""
        return self.query.dtype

    @property
    def _compute_dtype(self):
        import torch

        return torch.promote_types(self.query.dtype, torch.float32)

    def tensors(self) -> list:
        """Every tensor the recipe keeps (for counting kept bytes)."""
        return [self.query, self.key, *self.masks]

    def to(self, device=None, dtype=None) -> Recipe:
        """A copy kept on ``device``, queries and keys in ``dtype`` (masks keep theirs: bool stays bool)."""

        def move(tensor, floating: bool):
            return tensor.to(device=device, dtype=dtype if floating and dtype is not None else None)

        recipe = object.__new__(Recipe)
        recipe.query, recipe.key = move(self.query, True), move(self.key, True)
        recipe.masks = tuple(move(mask, mask.is_floating_point()) for mask in self.masks)
        recipe.causal, recipe.scale, recipe.packed, recipe.dropout = (
            self.causal,
            self.scale,
            self.packed,
            self.dropout,
        )
        return recipe

    def compact(self) -> Recipe:
        """A copy whose queries and keys own their memory: queries where they were views into
        larger tensors (timm's q, k and v are views of one qkv tensor: keeping the view would
        keep the values too), keys always, since they may be a KV cache's own tensor, which a
        static cache overwrites in place later. Masks are shared between layers and kept as they are."""
        recipe = self.to()
        key = _own(self.key)
        recipe.query, recipe.key = _own(self.query), key.clone() if key is self.key else key
        return recipe

    def detach(self) -> Recipe:
        recipe = self.to()
        recipe.query, recipe.key = self.query.detach(), self.key.detach()
        recipe.masks = tuple(mask.detach() for mask in self.masks)
        return recipe

    def items(self, batch: Any) -> Recipe:
        """A recipe of the map of these batch items only (an int, a slice, a sequence or a 1-D
        tensor of positions): its queries, keys and masks cut to them, so rebuilding it costs
        those items alone. Masks that broadcast over the batch are kept as they are."""
        n_batch = self.shape[0]
        positions = query_positions(batch, n_batch, self.query.device, "batch item")
        if positions.numel() == n_batch and bool((positions == _arange_like(positions)).all()):
            return self
        recipe = self.to()
        recipe.query = self.query.index_select(0, positions)
        recipe.key = self.key.index_select(0, positions.to(self.key.device))
        recipe.masks = tuple(
            mask if mask.shape[0] == 1 else mask.index_select(0, positions.to(mask.device))
            for mask in self.masks
        )
        return recipe

    # -- rebuilding -------------------------------------------------------------------------

    def full(self, heads: Any = None):
        """The whole map, (batch, heads, queries, keys), built block by block."""
        return self.rows(slice(None), heads)

    def rows(self, queries: Any = slice(None), heads: Any = None):
        """(batch, heads, len(queries), keys) for the query rows ``queries`` (an int, a slice, a
        sequence or a 1-D tensor of positions) and the heads ``heads`` (None: all; same forms)."""
        import torch

        batch, n_heads, n_queries, n_keys = self.shape
        positions = query_positions(queries, n_queries, self.query.device)
        head_index = None if heads is None else query_positions(heads, n_heads, self.query.device, "head")
        if self.packed:
            return self._packed_rows(positions, head_index)
        grad = torch.is_grad_enabled() and any(t.requires_grad for t in (self.query, self.key))
        if grad:
            return self._scores_softmax(positions, head_index, 0, n_keys, inplace=False).to(self.dtype)
        count = len(positions)
        out_heads = n_heads if head_index is None else len(head_index)
        if 0 < count <= BLOCK_ROWS:
            low, high = self._key_range(positions, head_index)
            if low == 0 and high == n_keys:  # one block that sees every key: its scores are the rows
                return self._scores_softmax(positions, head_index, low, high, inplace=True).to(self.dtype)
        out = torch.empty((batch, out_heads, count, n_keys), dtype=self.dtype, device=self.query.device)
        for start in range(0, count, BLOCK_ROWS):
            block = positions[start : start + BLOCK_ROWS]
            rows = out[:, :, start : start + len(block)]
            low, high = self._key_range(block, head_index)
            if high > low:
                rows[..., low:high] = self._scores_softmax(block, head_index, low, high, inplace=True)
            rows[..., :low] = 0  # keys no row of the block can see
            rows[..., max(low, high) :] = 0
        return out

    def blocks(self, size: int = BLOCK_ROWS, heads: Any = None) -> Iterator[tuple[int, Any]]:
        """``(first row, rows)`` for consecutive blocks of ``size`` query rows, each (batch, heads,
        rows, keys): the whole map without ever holding more than one block."""
        n_queries = self.shape[2]
        for start in range(0, n_queries, size):
            yield start, self.rows(slice(start, min(start + size, n_queries)), heads)

    # -- internals ---------------------------------------------------------------------------

    def _packed_rows(self, positions, head_index):
        """A grouped-query decoding step: query positions are the heads of one token."""
        if positions.numel() != 1 or int(positions[0]) != 0:
            raise IndexError(f"this call has one query token; query rows {positions.tolist()} do not exist")
        batch, kv_heads, groups, _ = self.query.shape
        unpacked = Recipe(self.query.reshape(batch, kv_heads * groups, 1, -1), self.key, scale=self.scale)
        unpacked.masks = tuple(_unpack_mask(mask, kv_heads, groups) for mask in self.masks)
        return unpacked.rows(slice(None), head_index)

    def _key_range(self, positions, head_index) -> tuple[int, int]:
        """The keys some row of the block can see: [low, high)."""
        import torch

        n_keys = self.key.shape[2]
        low, high = 0, n_keys
        if self.causal:
            high = min(high, int(positions.max()) + 1)
        for mask in self.masks:
            if mask.is_floating_point():
                continue  # (finite additive masks can hide nothing for sure)
            block = _mask_rows(mask, positions, head_index)
            seen = block.reshape(-1, block.shape[-1]).any(dim=0)
            if seen.shape[0] == 1:
                if not bool(seen[0]):
                    return 0, 0
                continue
            found = torch.nonzero(seen)
            if found.numel() == 0:
                return 0, 0
            low, high = max(low, int(found[0])), min(high, int(found[-1]) + 1)
        return low, max(low, high)

    def _scores_softmax(self, positions, head_index, low: int, high: int, *, inplace: bool):
        """Softmax rows ``positions`` over keys [low, high); ``inplace`` reuses the scores' memory
        (no autograd graph then)."""
        import torch

        dtype = self._compute_dtype
        scale = self.scale if self.scale is not None else 1.0 / math.sqrt(self.query.shape[-1])
        first, count = int(positions[0]), positions.numel()
        contiguous = int(positions[-1]) - first + 1 == count and bool((positions.diff() == 1).all())
        query = (
            self.query[:, :, first : first + count] if contiguous else self.query.index_select(2, positions)
        )
        key = self.key[:, :, low:high].to(dtype)
        groups = self.query.shape[1] // self.key.shape[1]
        batch = query.shape[0]
        if head_index is not None:
            query = query.index_select(1, head_index)
            key = key.index_select(1, torch.div(head_index, groups, rounding_mode="floor"))
            scores = torch.matmul(query.to(dtype) * scale, key.transpose(-2, -1))
        elif groups > 1:  # each key head serves `groups` query heads: no repeated keys
            heads = query.shape[1]
            folded = (query.to(dtype) * scale).reshape(batch, heads // groups, groups * count, -1)
            scores = torch.matmul(folded, key.transpose(-2, -1)).reshape(batch, heads, count, high - low)
        else:
            scores = torch.matmul(query.to(dtype) * scale, key.transpose(-2, -1))
        keep = None
        for mask in self.masks:
            block = _mask_rows(mask, positions, head_index)[..., low:high]
            if block.dtype == torch.bool:
                keep = block if keep is None else keep & block
            else:
                block = block.to(dtype)
                scores = scores.add_(block) if inplace and _fits(block, scores) else scores + block
        if self.causal:  # only the keys after the block's first row can be hidden from some row
            start = max(low, int(positions.min()) + 1)
            if start < high:
                columns = torch.arange(start, high, device=scores.device)
                hidden = positions[:, None] < columns[None, :]
                if inplace:
                    scores[..., start - low :].masked_fill_(hidden, -math.inf)
                else:
                    pad = torch.zeros((count, start - low), dtype=torch.bool, device=scores.device)
                    scores = scores.masked_fill(torch.cat([pad, hidden], dim=1), -math.inf)
        if keep is not None:
            scores = (
                scores.masked_fill_(~keep, -math.inf) if inplace else scores.masked_fill(~keep, -math.inf)
            )
        if inplace:
            torch.softmax(scores, dim=-1, out=scores)
            if self.masks:  # a row every mask hides is NaN here: zero, as the kernels give
                scores.nan_to_num_(nan=0.0)
            return scores
        return _safe_softmax(scores)


def query_positions(index: Any, size: int, device, what: str = "query row"):
    """``index`` (an int, a slice, a sequence or a 1-D tensor) as a 1-D long tensor of positions
    (:func:`visualizer._validate.positions`)."""
    import torch

    if isinstance(index, slice):
        return torch.arange(size, device=device)[index]
    return torch.tensor(positions(index, size, what), dtype=torch.long, device=device)


def _arange_like(positions):
    import torch

    return torch.arange(positions.numel(), device=positions.device)


def _own(tensor):
    """``tensor`` itself, or a compact copy where it is a view into a larger storage."""
    if tensor.untyped_storage().nbytes() > 1.05 * tensor.numel() * tensor.element_size() + 64:
        return tensor.contiguous() if not tensor.is_contiguous() else tensor.clone()
    return tensor


def _as_4d(mask):
    while mask.dim() < 4:
        mask = mask.unsqueeze(0)
    if mask.dim() > 4:
        raise ValueError(
            f"a mask of shape {tuple(mask.shape)} does not broadcast to (batch, heads, queries, keys)"
        )
    return mask


def _mask_rows(mask, positions, head_index):
    """The mask's rows for ``positions`` (and heads), still broadcastable."""
    if mask.shape[2] != 1:
        mask = mask.index_select(2, positions.to(mask.device))
    if head_index is not None and mask.shape[1] != 1:
        mask = mask.index_select(1, head_index.to(mask.device))
    return mask.to(positions.device)


def _unpack_mask(mask, kv_heads: int, groups: int):
    """A packed decoding step's mask (batch, kv heads or 1, groups or 1, keys), unfolded."""
    if mask.shape[1] == 1 and mask.shape[2] == 1:
        return mask
    return mask.expand(mask.shape[0], kv_heads, groups, mask.shape[-1]).reshape(
        mask.shape[0], -1, 1, mask.shape[-1]
    )


def _fits(block, scores) -> bool:
    """Whether ``scores += block`` keeps the scores' shape (no broadcasting of the result)."""
    return all(b in (1, s) for b, s in zip(block.shape, scores.shape, strict=True))


def _safe_softmax(scores):
    """Softmax over the last dimension, differentiable; a row with every score -inf comes out zero."""
    import torch

    top = scores.amax(dim=-1, keepdim=True).detach()
    top = torch.where(torch.isinf(top) & (top < 0), torch.zeros_like(top), top)
    weights = (scores - top).exp()
    total = weights.sum(dim=-1, keepdim=True)
    return weights / torch.where(total == 0, torch.ones_like(total), total)
