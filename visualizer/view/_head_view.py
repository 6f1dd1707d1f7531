"""``head_view``: text attention as two columns of tokens joined by weighted lines.

>>> view = head_view(outputs.attentions, tokenizer.convert_ids_to_tokens(ids[0]))
>>> view.save("bert_heads.html")

``attentions``: per-layer (batch, heads, queries, keys) or (heads, queries, keys) maps, or
a stacked (layers, ...) array, numpy or torch; see :mod:`visualizer.view._maps`.
"""

from __future__ import annotations

from collections.abc import Sequence

from visualizer.view._attention_view import AttentionView
from visualizer.view._codec import encode_maps
from visualizer.view._document import check_text, check_title, plural, render_fragment
from visualizer.view._maps import initial_head, initial_layer, stack_attentions

__all__ = ["head_view"]

_ROW_PX = 22  # keep in step with ROW in static/head_view.js


def head_view(
    attentions,
    tokens,
    *,
    key_tokens=None,
    layers=None,
    heads=None,
    layer=None,
    head=None,
    batch: int = 0,
    title: str | None = None,
) -> AttentionView:
    """An interactive head view of text attention: pick a layer, a head, all heads or their mean.

    - ``tokens``: one string per query, e.g. ``tokenizer.convert_ids_to_tokens(input_ids[0])``;
    - ``key_tokens``: one string per key, when keys differ from queries (cross-attention);
      by default the keys are ``tokens``;
    - ``layers``, ``heads``: indices to keep (negative ones count from the end), to focus or
      to make the file smaller; ``batch``: which item of a batched map;
    - ``layer``: the layer the view opens on (an index into all layers, one of those kept);
      None: the kept layer two thirds of the way down, ``(2 * kept) // 3``;
    - ``head``: the head it opens on (an index, one of those kept), ``"mean"`` or ``"all"``
      (every head in its own colour: a hairball on long inputs); None: the first kept head.

    Hover a token to see only its lines; click it to pin it (click again to release).
    """
    stack = stack_attentions(attentions, batch=batch, layers=layers, heads=heads)
    start_layer = initial_layer(stack, layer, "head_view()")
    start_head = initial_head(stack, head, ("mean", "all"), "head_view()")
    _, _, queries, keys = stack.maps.shape
    tokens = _check_tokens(tokens, "tokens")
    if len(tokens) != queries:
        raise ValueError(
            f"tokens has {len(tokens)} entries but the maps have {queries} queries; pass one "
            "token per position (special tokens such as [CLS] and [SEP] included)"
        )
    if key_tokens is None:
        if keys != queries:
            raise ValueError(
                f"the maps have {queries} queries but {keys} keys (cross-attention?); "
                "pass key_tokens= with one string per key"
            )
    else:
        key_tokens = _check_tokens(key_tokens, "key_tokens")
        if len(key_tokens) != keys:
            raise ValueError(f"key_tokens has {len(key_tokens)} entries but the maps have {keys} keys")
    title = check_title(title, "Attention heads")
    payload, meta = encode_maps(stack.maps)
    config = {
        "kind": "head",
        "title": title,
        "layers": stack.layer_labels,
        "heads": stack.head_labels,
        "maps": meta,
        "tokens": tokens,
        "key_tokens": key_tokens,
        "initial": {"layer": start_layer, "head": start_head},
    }
    layer_count, head_count = len(stack.layer_labels), len(stack.head_labels)
    height = 140 + max(queries, keys) * _ROW_PX + 28 * (head_count > 14)
    summary = f"{plural(layer_count, 'layer')} x {plural(head_count, 'head')}, {queries} x {keys} tokens"
    return AttentionView(
        "head", render_fragment("head", config, payload), title=title, height=height, summary=summary
    )


def _check_tokens(tokens, argument: str) -> list[str]:
    if isinstance(tokens, str) or not isinstance(tokens, Sequence) and not hasattr(tokens, "tolist"):
        raise TypeError(
            f"{argument} must be a list of strings, one per position; got {type(tokens).__name__}"
            + (" (split it into tokens first)" if isinstance(tokens, str) else "")
        )
    items = tokens.tolist() if hasattr(tokens, "tolist") else list(tokens)
    for item in items:
        if not isinstance(item, str):
            raise TypeError(
                f"{argument} must hold strings; got {item!r} ({type(item).__name__}). "
                "For token ids, use tokenizer.convert_ids_to_tokens(ids)"
            )
    for position, item in enumerate(items):
        check_text(item, f"{argument}[{position}]")
    return items
