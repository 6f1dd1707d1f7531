"""``text_view``: attention over a long text, laid out as prose; for causal LMs and generation too.

>>> view = text_view(maps, tokenizer.convert_ids_to_tokens(ids[0]))       # 4,096 tokens: a few MB
>>> view = text_view([maps.generation(i) for i in range(len(maps))], tokens, prompt_length=12)
>>> view.save("text.html")
>>> text_view(maps, tokens, relevance=explain(model, ids, target=42))   # "Show": relevance | attention

Hover a token to shade the tokens it attends to (its row), or, with the direction switch,
the tokens that attend to it (its column); click to pin it. Pick a layer, a head or the mean
over heads. With ``prompt_length`` the generated tokens are marked, and a step slider shows
the text as it was at each step of generation, the token generated at that step as query.
With ``relevance`` the view opens on the tokens shaded by their relevance scores, named above
the text (method, target, position) with a colour bar; "Show" switches to attention and back
(:mod:`visualizer.view._relevance`).

``attentions``: an ``AttentionMaps`` (read a block of rows at a time, never whole; a layer that
ran once per ``generate`` step is stitched with ``maps.generation``; see
:mod:`visualizer.view._row_source`), or plain maps (:meth:`AttentionMaps.from_arrays
<visualizer.AttentionMaps.from_arrays>`, ``generate()``'s per-step attentions included);
self-attention, (batch, heads, T, T).
What the view keeps of each row, and why, is in :mod:`visualizer.view._topk_codec`; the
view says it under the text, with the share of the attention mass the kept weights hold.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from visualizer._arrays import as_maps
from visualizer._validate import positive_int
from visualizer.plots._colors import ATTENTION_CMAP, colormap_table
from visualizer.view._attention_view import AttentionView
from visualizer.view._document import check_text, check_title, plural, render_fragment
from visualizer.view._maps import check_weights, initial_head, initial_layer
from visualizer.view._relevance import relevance_panel
from visualizer.view._row_source import row_reader
from visualizer.view._tokens import pretty_tokens
from visualizer.view._topk_codec import LEVELS, TopKEncoder

__all__ = ["text_view"]

WHAT = "text_view()"


def text_view(
    attentions,
    tokens,
    *,
    layers=None,
    heads=None,
    layer=None,
    head=None,
    prompt_length: int | None = None,
    keep: int = 16,
    bin_width: int = 128,
    batch: int = 0,
    scheme: str | None = None,
    title: str | None = None,
    relevance=None,
) -> AttentionView:
    """An interactive view of self-attention over a long text; see the module docstring.

    - ``tokens``: one string per position, raw tokenizer pieces (``Ġ``, ``▁`` and ``##`` are
      shown as text, the raw piece on hover; ``scheme``: see
      :func:`visualizer.view._tokens.pretty_tokens`). For a generation, the prompt and the
      generated tokens; one more than the maps' queries is accepted (the last generated
      token, which was never fed back, has no row);
    - ``layers``, ``heads``: indices to keep; ``layer``: the layer it opens on (an index into
      all layers, one of those kept; None: two thirds of the way down); ``head``: the head it
      opens on (an index, one of those kept) or ``"mean"`` (None: the mean);
    - ``prompt_length``: how many tokens are the prompt; the rest are shown as generated,
      with a step slider;
    - ``keep``: the strongest weights kept per row; ``bin_width``: the width, in tokens, of
      the bins the rest of each row is summed over;
    - ``batch``: which item of a batched map (and of batched relevance scores);
    - ``relevance``: what :func:`visualizer.explain` returns, or plain scores, (tokens,) or
      (batch, tokens): one per token (a generation's last token may have none). The view opens
      on them; see :mod:`visualizer.view._relevance`.
    """
    attentions = as_maps(attentions, f"{WHAT}: attentions").maps
    source = row_reader(attentions, batch=batch, layers=layers, heads=heads, what=WHAT)
    layer_count, head_count, queries, keys = source.shape
    if queries != keys:
        raise ValueError(
            f"{WHAT} shows self-attention over one text: the maps have {queries} queries but {keys} keys "
            "(cross-attention?); use head_view(..., key_tokens=...) for cross-attention"
        )
    keep = positive_int(keep, f"{WHAT}: keep")
    bin_width = positive_int(bin_width, f"{WHAT}: bin_width")
    stack = source.stack
    start_layer = initial_layer(stack, layer, WHAT)
    start_head = initial_head(stack, "mean" if head is None else head, ("mean",), WHAT)
    tokens = _check_tokens(tokens)
    if len(tokens) not in (queries, queries + 1):
        raise ValueError(
            f"{WHAT}: tokens has {len(tokens)} entries but the maps have {queries} queries; pass one token "
            "per position (for a generation: the prompt and the generated tokens; the last generated "
            "token may be included, it has no row)"
        )
    prompt = _check_prompt(prompt_length, len(tokens))
    pretty = pretty_tokens(tokens, scheme)
    title = check_title(
        title, "Attention over the text" if relevance is None else "Attention and relevance over the text"
    )
    for position, token in enumerate(pretty):
        check_text(token.text, f"tokens[{position}]")

    relevance_meta, extra = None, {}
    if relevance is not None:
        names = [t.text for t in pretty]
        shorter = queries if len(tokens) == queries + 1 else None
        relevance_meta, extra["tvz-relevance"] = relevance_panel(
            relevance, count=len(tokens), batch=batch, what=WHAT, names=names, shorter=shorter
        )
    payload, meta, causal = _encode(source, keep, bin_width)
    kept = _kept_note(meta, layer_count, head_count, queries, causal)
    table = colormap_table(ATTENTION_CMAP)
    config = {
        "kind": "text",
        "title": title,
        "layers": stack.layer_labels,
        "heads": stack.head_labels,
        "maps": {
            **meta,
            "shape": [layer_count, head_count, queries, keys],
            "causal": causal,
            "levels": LEVELS,
        },
        "text": [t.text for t in pretty],
        "raw": [t.raw for t in pretty],
        "space": "".join("1" if t.space else "0" for t in pretty),
        "prompt_length": prompt,
        "kept": kept,
        "shade": table[int(0.62 * (len(table) - 1))],
        "initial": {"layer": start_layer, "head": start_head},
    }
    if relevance_meta is not None:
        config["relevance"] = relevance_meta
    summary = f"{plural(layer_count, 'layer')} x {plural(head_count, 'head')}, {len(tokens)} tokens" + (
        f" ({prompt} prompt)" if prompt is not None else ""
    )
    height = 220 + min(600, 24 * (1 + sum(len(t.text) + t.space for t in pretty) // 110))
    if relevance_meta is not None:
        summary += f", relevance ({relevance_meta['method'] or 'scores'})"
        height += 50
    return AttentionView(
        "text", render_fragment("text", config, payload, extra), title=title, height=height, summary=summary
    )


def _check_tokens(tokens) -> list[str]:
    if isinstance(tokens, str) or not isinstance(tokens, Sequence) and not hasattr(tokens, "tolist"):
        raise TypeError(
            f"{WHAT}: tokens must be a list of strings, one per position; got {type(tokens).__name__}"
            + (" (split it into tokens first)" if isinstance(tokens, str) else "")
        )
    items = tokens.tolist() if hasattr(tokens, "tolist") else list(tokens)
    for position, item in enumerate(items):
        if not isinstance(item, str):
            raise TypeError(
                f"{WHAT}: tokens must hold strings; got {item!r} ({type(item).__name__}) at {position}. "
                "For token ids, use tokenizer.convert_ids_to_tokens(ids)"
            )
        check_text(item, f"tokens[{position}]")
    return items


def _check_prompt(prompt_length, count: int) -> int | None:
    if prompt_length is None:
        return None
    if isinstance(prompt_length, bool) or not isinstance(prompt_length, int):
        raise TypeError(f"{WHAT}: prompt_length must be an int or None; got {type(prompt_length).__name__}")
    if not 1 <= prompt_length <= count:
        raise ValueError(
            f"{WHAT}: prompt_length must be from 1 to {count} (the number of tokens); got {prompt_length}"
        )
    return prompt_length


def _encode(source, keep: int, bin_width: int) -> tuple[str, dict, bool]:
    """Encode every row, block by block; and whether every row is causal (no weight after its query)."""
    layers, heads, queries, keys = source.shape
    encoder = TopKEncoder(layers * heads * queries, keys, keep, bin_width)
    causal = True
    for position, start, block in source.blocks():
        check_weights(block, f"{WHAT}: attentions")
        rows = np.arange(start, start + block.shape[1])
        if causal:  # no weight on a key after the query: row start + i, key j > start + i
            causal = not np.triu(block, start + 1).any()
        for head in range(heads):
            encoder.add(block[head], (position * heads + head) * queries + rows)
    payload, meta = encoder.finish()
    return payload, meta, causal


def _kept_note(meta: dict, layers: int, heads: int, queries: int, causal: bool) -> str:
    """What the view holds, said in the view."""
    share = 100 * meta["kept_mass"]
    return (
        f"Kept for each of the {layers * heads * queries:,} rows ({layers} x {heads} x {queries:,}): its "
        f"{meta['keep']} strongest weights, to 1/{LEVELS} of the row's largest (they hold {share:.1f}% of "
        f"the attention mass), and the rest as sums over {meta['bin_width']}-token bins, shown spread "
        "evenly over each bin's other tokens" + (" that the row can see (causal)." if causal else ".")
    )
