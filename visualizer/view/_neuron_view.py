"""``neuron_view``: one head's query and key vectors, their elementwise product, its sum and the weight.

>>> with capture_attention(model) as maps:          # sdpa: the kernel's queries and keys are kept
...     model(ids)
>>> view = neuron_view(maps, tokenizer.convert_ids_to_tokens(ids[0]), layer=1, head=3)
>>> view.save("neuron.html")

For the pair (query i, key j) of head h: the query vector ``q_i`` (head dim), the key vector
``k_j`` of the key head serving h (grouped-query attention: key head ``h // (heads // key
heads)``), their elementwise product, its sum ``q_i . k_j``, times the scale (the logit),
plus the mask (0, or -inf where the key is hidden: causal or padding), and the weight: the
softmax of the logits of row i. Click a query token, then hover or click key tokens.

The vectors are what the kernel received (``maps.recipe(layer)``: after rotary embeddings,
for instance), so the weights are exactly the map's. A layer captured eagerly kept only its
map: the view then says how to capture the queries and keys.

Payload (little-endian float32, deflated, base64): queries (queries, dim), keys (keys, dim),
and, where a mask other than the causal one applies, the additive mask: one value per key
(``"keys"``: padding, as transformers passes it, with or without the causal mask on top)
where every row gets the same, else the whole (queries, keys) matrix (``"matrix"``).
"""

from __future__ import annotations

import base64
import math
import zlib

import numpy as np

from visualizer._maps import AttentionMaps
from visualizer._validate import index
from visualizer.view._attention_view import AttentionView
from visualizer.view._document import check_text, check_title, render_fragment
from visualizer.view._tokens import pretty_tokens

__all__ = ["neuron_view"]

WHAT = "neuron_view()"


def neuron_view(
    maps,
    tokens,
    *,
    layer,
    head=0,
    query=None,
    key=None,
    batch: int = 0,
    scheme: str | None = None,
    title: str | None = None,
) -> AttentionView:
    """The neuron view of one layer and head of ``maps`` (see the module docstring).

    - ``maps``: the ``AttentionMaps`` of ``capture_attention(model)`` with the model on its
      ``sdpa`` kernel (the capture keeps the queries and keys); ``layer``: a captured layer
      (position, negative from the end, or module path); ``head``: a query head;
    - ``tokens``: one string per position (raw pieces, shown as text; ``scheme``: see
      :func:`visualizer.view._tokens.pretty_tokens`);
    - ``query``, ``key``: the pair it opens on; None: the last query and its strongest key;
    - ``batch``: which item of the batch.
    """
    recipe, path = _recipe(maps, layer)
    batches, heads, queries, keys = recipe.shape
    item = index(batch, batches, f"{WHAT}: batch", "batch item")
    chosen = index(head, heads, f"{WHAT}: head", "head")
    tokens = _check_tokens(tokens, queries, keys)
    pretty = pretty_tokens(tokens, scheme)
    row = queries - 1 if query is None else index(query, queries, f"{WHAT}: query", "query")
    groups = heads // recipe.key.shape[1]
    q = _numpy(recipe.query[item, chosen])
    k = _numpy(recipe.key[item, chosen // groups])
    scale = recipe.scale if recipe.scale is not None else 1.0 / math.sqrt(q.shape[-1])
    mode, causal, bias = _mask(recipe, item, chosen, queries, keys)
    if key is None:
        weights = _numpy(recipe.rows(row, heads=[chosen])[item, 0])
        column = int(np.argmax(weights))
    else:
        column = index(key, keys, f"{WHAT}: key", "key")
    title = check_title(title, "Query, key and their product")
    parts = [q, k] + ([bias] if bias is not None else [])
    raw = b"".join(np.ascontiguousarray(part, dtype="<f4").tobytes() for part in parts)
    payload = base64.b64encode(zlib.compress(raw, 6)).decode("ascii")
    config = {
        "kind": "neuron",
        "title": title,
        "layer": path,
        "head": chosen,
        "key_head": chosen // groups,
        "heads": heads,
        "maps": {
            "encoding": "neuron-f32",
            "compression": "deflate",
            "shape": [queries, keys, int(q.shape[-1])],
            "mask": mode,
            "causal": causal,
        },
        "scale": float(scale),
        "text": [t.text for t in pretty],
        "raw": [t.raw for t in pretty],
        "space": "".join("1" if t.space else "0" for t in pretty),
        "initial": {"query": row, "key": column},
    }
    summary = f"{path}, head {chosen}, {queries} tokens, head dim {q.shape[-1]}"
    height = 330 + 2 * min(300, 24 * (1 + sum(len(t.text) + 1 for t in pretty) // 110))
    return AttentionView(
        "neuron", render_fragment("neuron", config, payload), title=title, height=height, summary=summary
    )


def _recipe(maps, layer):
    if not isinstance(maps, AttentionMaps):
        raise TypeError(
            f"{WHAT}: maps must be the AttentionMaps of capture_attention(model), which keeps the queries "
            f"and keys; got {type(maps).__name__} (attention weights alone do not hold the vectors)"
        )
    if isinstance(layer, bool) or not isinstance(layer, (int, str)):
        raise TypeError(
            f"{WHAT}: layer must be an int (position) or a module path; got {type(layer).__name__}"
        )
    if isinstance(layer, int):
        layer = index(layer, len(maps), f"{WHAT}: layer", "layer")
    info = maps.info(layer)
    if info.calls > 1:
        raise ValueError(
            f"{WHAT}: layer {info.path!r} ran {info.calls} times during the capture (model.generate?); "
            "the neuron view reads one forward over the whole text: capture model(input_ids) alone"
        )
    recipe = maps.recipe(layer)
    if recipe is None:
        reason = f" ({info.eager_reason})" if info.eager_reason else ""
        raise ValueError(
            f"{WHAT}: layer {info.path!r} was captured eagerly{reason}: only its map was kept, not the "
            "queries and keys this view shows. Run the model on its sdpa kernel "
            "(attn_implementation='sdpa') and capture with capture_attention(model) (lazy=None or "
            "lazy=True): the capture then keeps what the kernel received"
        )
    if recipe.packed:
        raise ValueError(
            f"{WHAT}: layer {info.path!r} holds one decoding step of grouped-query attention; capture a "
            "forward over the whole text (no generate) to see its query and key vectors"
        )
    return recipe, info.path


def _check_tokens(tokens, queries: int, keys: int) -> list[str]:
    if queries != keys:
        raise ValueError(
            f"{WHAT} shows self-attention over one text; this layer has {queries} queries and {keys} keys"
        )
    if isinstance(tokens, str) or not hasattr(tokens, "__len__"):
        raise TypeError(
            f"{WHAT}: tokens must be a list of strings, one per position; got {type(tokens).__name__}"
        )
    items = list(tokens)
    for position, item in enumerate(items):
        if not isinstance(item, str):
            raise TypeError(
                f"{WHAT}: tokens must hold strings; got {item!r} at {position}. For token ids, use "
                "tokenizer.convert_ids_to_tokens(ids)"
            )
        check_text(item, f"tokens[{position}]")
    if len(items) != queries:
        raise ValueError(f"{WHAT}: tokens has {len(items)} entries but the layer has {queries} tokens")
    return items


def _numpy(tensor) -> np.ndarray:
    return tensor.detach().to("cpu").float().numpy()


def _mask(recipe, item: int, head: int, queries: int, keys: int):
    """``(mode, causal, values)``: how the mask of one batch item and head is stored (see the
    module docstring); values: None, (keys,) or (queries, keys) float32, -inf where hidden."""
    if not recipe.masks:
        return "none", recipe.causal, None
    bias = _bias(recipe, item, head, queries, keys)
    above = np.triu(np.ones((queries, keys), dtype=bool), 1)
    causal = bool(np.isneginf(bias[above]).all())
    row = bias[-1] if causal else bias[0]
    expected = np.where(above, -np.inf, row[None, :]) if causal else np.broadcast_to(row, bias.shape)
    if np.array_equal(bias, expected):
        return "keys", causal, row
    return "matrix", False, bias


def _bias(recipe, item: int, head: int, queries: int, keys: int):
    """The additive mask of one batch item and head, (queries, keys) float32 (-inf where hidden),
    causal part included."""
    bias = np.zeros((queries, keys), dtype=np.float32)
    for mask in recipe.masks:
        part = mask[min(item, mask.shape[0] - 1), min(head, mask.shape[1] - 1)]
        part = np.broadcast_to(
            _numpy(part) if part.is_floating_point() else part.cpu().numpy(), (queries, keys)
        )
        if part.dtype == np.bool_:
            bias[~part] = -np.inf
        else:
            bias += part
    if recipe.causal:
        bias[np.triu(np.ones((queries, keys), dtype=bool), 1)] = -np.inf
    return bias
