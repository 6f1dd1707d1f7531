"""``head_view``: text attention as two columns of tokens joined by weighted lines.

>>> view = head_view(outputs.attentions, tokenizer.convert_ids_to_tokens(ids[0]), head=[0, 3])
>>> view.save("bert_heads.html")
>>> head_view(maps, encoder_tokens, decoder_tokens=decoder_tokens)   # BART, T5, nn.Transformer

``attentions``: an ``AttentionMaps`` or plain maps (:meth:`AttentionMaps.from_arrays
<visualizer.AttentionMaps.from_arrays>`: ``outputs.attentions``, per-layer maps, a stacked
array, numpy or torch). Maps of an encoder-decoder model (a capture, or a Hugging Face
``outputs`` with its encoder, decoder and cross attentions) get a selector:
encoder self-attention, decoder self-attention and cross-attention
(decoder tokens as queries, encoder tokens as keys).
"""

from __future__ import annotations

from collections.abc import Sequence

from visualizer._validate import index
from visualizer.view._attention_view import AttentionView
from visualizer.view._bertviz import SENTENCES, Arguments, finish, sentence_parts
from visualizer.view._codec import encode_maps
from visualizer.view._document import check_text, check_title, plural, render_fragment
from visualizer.view._maps import initial_head, initial_layer, stack_layers
from visualizer.view._sections import keep_layers, sections
from visualizer.view._tokens import pretty_tokens

__all__ = ["check_tokens", "head_view", "initial_heads", "shown_tokens"]

_ROW_PX = 22  # keep in step with ROW in static/head_view.js


def head_view(
    attentions=None,
    tokens=None,
    sentence_b_start=None,
    prettify_tokens=True,
    layer=None,
    heads=None,
    encoder_attention=None,
    decoder_attention=None,
    cross_attention=None,
    encoder_tokens=None,
    decoder_tokens=None,
    include_layers=None,
    html_action=None,
    *,
    attention=None,
    key_tokens=None,
    layers=None,
    include_heads=None,
    head=None,
    batch: int = 0,
    scheme: str | None = None,
    display_mode: str | None = None,
    title: str | None = None,
) -> AttentionView | None:
    """An interactive head view of text attention: tick any heads, or show their mean.

    The positional arguments are bertviz's, with bertviz's meaning (``head_view(attention,
    tokens, sentence_b_start, prettify_tokens, layer, heads, ...)``); see the guide's "Coming
    from bertviz".

    - ``attentions`` (bertviz: ``attention``): an ``AttentionMaps`` or plain maps; or, as in
      bertviz, ``encoder_attention=``, ``decoder_attention=`` and ``cross_attention=`` (a
      Hugging Face output's fields) with ``encoder_tokens=`` and ``decoder_tokens=``;
    - ``tokens``: one string per query, e.g. ``tokenizer.convert_ids_to_tokens(input_ids[0])``;
      for an encoder-decoder capture, the encoder's tokens. Shown prettified (``Ġ``, ``##``,
      ``▁`` and byte-level pieces read back as text; see :mod:`visualizer.view._tokens`), the
      raw piece on hover; ``scheme``: the tokenizer's convention ("bytelevel",
      "sentencepiece", "wordpiece", "raw"; ``prettify_tokens=False`` is "raw"), None to read
      it from the tokens;
    - ``sentence_b_start``: the first token of the second sentence of a pair: a selector shows
      all the attention, or that from sentence A or B to sentence A or B;
    - ``key_tokens``: one string per key, when keys differ from queries (cross-attention
      passed as plain maps); by default the keys are ``tokens``;
    - ``decoder_tokens``: the decoder's tokens, required for (and only for) the maps of an
      encoder-decoder model; cross-attention has them as queries and ``tokens`` as keys;
    - ``layers`` (bertviz: ``include_layers``), ``include_heads``: indices to keep (negative
      ones count from the end), to focus or to make the file smaller; ``batch``: which item
      of a batched map;
    - ``layer``: the layer the view opens on (an index into all layers, one of those kept);
      None: the kept layer two thirds of the way down, ``(2 * kept) // 3`` (of the encoder,
      for an encoder-decoder model);
    - ``heads`` (bertviz's name; ours: ``head``): the heads ticked when it opens, the others
      still selectable: an index, a list of indices (a subset, each in its colour), ``"all"``
      or ``"mean"`` (the mean of all heads); None: the first kept head;
    - ``display_mode``: the theme it opens with, "light" or "dark" (None: the system's);
    - ``html_action``: None returns the view (``.save(path)``, ``.html``); "view" displays it
      and returns None; "return" returns it (its ``.data`` is the HTML), as bertviz does.

    In the view, click heads to tick or untick them, double-click one to solo it; hover a
    token to see only its lines, click it to pin it (click again to release).
    """
    what = "head_view()"
    args = Arguments(
        what,
        attentions=attentions,
        attention=attention,
        tokens=tokens,
        encoder_tokens=encoder_tokens,
        encoder_attention=encoder_attention,
        decoder_attention=decoder_attention,
        cross_attention=cross_attention,
        layers=layers,
        include_layers=include_layers,
        include_heads=include_heads,
        head=head,
        heads=heads,
        scheme=scheme,
        prettify_tokens=prettify_tokens,
        display_mode=display_mode,
        html_action=html_action,
    )
    maps, groups = args.maps, sections(args.maps)
    if groups is None and decoder_tokens is not None:
        raise ValueError(
            "decoder_tokens= is for the maps of an encoder-decoder model (their layers declared "
            "encoder/decoder with cross-attention); these maps declare no cross-attention. Drop "
            "decoder_tokens=, or pass key_tokens= for plain cross-attention maps"
        )
    title = check_title(title, "Attention heads")
    if args.tokens is None:
        raise TypeError(f"{what}: tokens is required, one string per position (bertviz: tokens=)")
    tokens = check_tokens(args.tokens, "tokens")
    if groups is not None:
        if sentence_b_start is not None:
            raise ValueError(
                f"{what}: sentence_b_start= is for a sentence pair, not an encoder-decoder model"
            )
        specs, count = _encoder_decoder(maps, groups, tokens, decoder_tokens, key_tokens, args, batch)
        note = f"{len(tokens)} encoder x {len(decoder_tokens)} decoder tokens"
        view = _sectioned(specs, count, layer, args, title, note, max(len(tokens), len(decoder_tokens)))
        return finish(view, args.action)
    stack = stack_layers(maps, batch=batch, layers=args.layers, heads=args.heads)
    _, _, queries, keys = stack.maps.shape
    _check_count(tokens, queries, "tokens", "queries")
    if key_tokens is None:
        if keys != queries:
            raise ValueError(
                f"the maps have {queries} queries but {keys} keys (cross-attention?); "
                "pass key_tokens= with one string per key"
            )
    else:
        key_tokens = check_tokens(key_tokens, "key_tokens")
        _check_count(key_tokens, keys, "key_tokens", "keys")
    if sentence_b_start is not None:
        if key_tokens is not None:
            raise ValueError(
                f"{what}: sentence_b_start= is for self-attention over a sentence pair, not key_tokens="
            )
        parts = sentence_parts(sentence_b_start, queries, what)
        specs = [
            (
                name,
                stack,
                stack.maps[:, :, parts[q], parts[k]],
                tokens[parts[q]],
                None if q == k else tokens[parts[k]],
            )
            for name, q, k in SENTENCES
        ]
        view = _sectioned(
            specs, len(maps), layer, args, title, f"{queries} tokens, B from {sentence_b_start}", queries
        )
        return finish(view, args.action)
    start_layer = initial_layer(stack, layer, what)
    start = initial_heads(stack, args.head, what)
    payload, meta = encode_maps(stack.maps)
    config = {
        "kind": "head",
        "title": title,
        "layers": stack.layer_labels,
        "heads": stack.head_labels,
        "maps": meta,
        **_token_config(tokens, key_tokens, args.scheme),
        "initial": {"layer": start_layer, **start},
        "theme": args.theme,
    }
    layer_count, head_count = len(stack.layer_labels), len(stack.head_labels)
    summary = f"{plural(layer_count, 'layer')} x {plural(head_count, 'head')}, {queries} x {keys} tokens"
    view = AttentionView(
        "head",
        render_fragment("head", config, payload),
        title=title,
        height=_height(max(queries, keys), head_count),
        summary=summary,
    )
    return finish(view, args.action)


def _encoder_decoder(maps, groups, tokens, decoder_tokens, key_tokens, args, batch) -> tuple[list, int]:
    """The sections of an encoder-decoder model's maps: ``(name, stack, maps, query tokens, key
    tokens or None)`` each, and how many layers there are."""
    if key_tokens is not None:
        raise ValueError(
            "key_tokens= is not used for an encoder-decoder capture: pass the encoder's tokens as tokens= "
            "and the decoder's as decoder_tokens="
        )
    if decoder_tokens is None:
        raise ValueError(
            "these maps come from an encoder-decoder model: pass decoder_tokens= (one string per decoder "
            "position) besides tokens= (the encoder's)"
        )
    decoder_tokens = check_tokens(decoder_tokens, "decoder_tokens")
    specs = []
    for name, positions in keep_layers(groups, args.layers, len(maps)):
        stack = stack_layers(maps, batch=batch, layers=positions, heads=args.heads)
        _, _, queries, keys = stack.maps.shape
        query_side = ("tokens", tokens) if name == "Encoder self" else ("decoder_tokens", decoder_tokens)
        key_side = ("decoder_tokens", decoder_tokens) if name == "Decoder self" else ("tokens", tokens)
        _check_count(query_side[1], queries, query_side[0], "queries")
        _check_count(key_side[1], keys, key_side[0], "keys")
        specs.append((name, stack, stack.maps, query_side[1], tokens if name == "Cross" else None))
    return specs, len(maps)


def _sectioned(specs, count: int, layer, args, title: str, note: str, longest: int) -> AttentionView:
    """A head view with a selector of sections (encoder self, decoder self, cross; or bertviz's
    sentence filter): ``specs`` holds ``(name, stack, maps, query tokens, key tokens or None)``."""
    chosen_layer = None if layer is None else index(layer, count, "head_view(): layer", "layer")
    built, extra, start_section, start_layer = [], {}, 0, None
    for number, (name, stack, weights, query_tokens, key_tokens) in enumerate(specs):
        if chosen_layer in stack.layer_index and start_layer is None:
            start_section, start_layer = number, stack.layer_index.index(chosen_layer)
        payload, meta = encode_maps(weights)
        section = {
            "name": name,
            "layers": stack.layer_labels,
            "maps": meta,
            **_token_config(query_tokens, key_tokens, args.scheme),
        }
        if number:
            section["data"] = f"tvz-data-{number}"
            extra[section["data"]] = payload
        else:
            main, first = payload, section
        built.append((section, stack))
    if chosen_layer is not None and start_layer is None:
        raise ValueError(f"head_view(): layer {layer} is not among the kept layers; add it to layers=")
    if start_layer is None:
        start_layer = initial_layer(built[0][1], None, "head_view()")
    head_labels = built[0][1].head_labels
    config = {
        "kind": "head",
        "title": title,
        "layers": first["layers"],
        "heads": head_labels,
        "maps": first["maps"],
        "tokens": first["tokens"],
        "raw_tokens": first["raw_tokens"],
        "sections": [section for section, _ in built],
        "initial": {
            "layer": start_layer,
            "section": start_section,
            **initial_heads(built[0][1], args.head, "head_view()"),
        },
        "theme": args.theme,
    }
    named = [f"{section['name']}: {plural(len(section['layers']), 'layer')}" for section, _ in built]
    if len({tuple(section["layers"]) for section, _ in built}) == 1:  # the sentence filter's choices
        named = [f"{plural(len(first['layers']), 'layer')} in {len(built)} choices"]
    summary = ", ".join(named) + f"; {plural(len(head_labels), 'head')}, {note}"
    fragment = render_fragment("head", config, main, extra_scripts=extra)
    height = _height(longest, len(head_labels)) + 10
    return AttentionView("head", fragment, title=title, height=height, summary=summary)


def _height(rows: int, head_count: int) -> int:
    return 150 + rows * _ROW_PX + 28 * (head_count > 14)


def initial_heads(stack, head, what: str) -> dict:
    """``{"heads": [positions ticked], "mean": bool}`` from ``head=``: an index, a list, "all" or "mean"."""
    every = list(range(len(stack.head_index)))
    listlike = isinstance(head, Sequence) or getattr(head, "ndim", 0) == 1
    if isinstance(head, str) or not listlike:
        chosen = initial_head(stack, head, ("mean", "all"), what)
        if chosen in ("mean", "all"):
            return {"heads": every, "mean": chosen == "mean"}
        return {"heads": [chosen], "mean": False}
    listed = head.tolist() if hasattr(head, "tolist") else list(head)
    if not listed:
        raise ValueError(f"{what}: head is an empty list; tick at least one head, or pass None")
    for item in listed:
        if isinstance(item, str):
            raise TypeError(
                f"{what}: a list of heads holds head indices (ints), not {item!r}; 'mean' and 'all' go alone"
            )
    positions = [initial_head(stack, item, (), what) for item in listed]
    if len(set(positions)) != len(positions):
        raise ValueError(f"{what}: head {listed} names a head more than once; name each once")
    return {"heads": sorted(positions), "mean": False}


def _check_count(tokens: list[str], count: int, argument: str, noun: str) -> None:
    if len(tokens) != count:
        raise ValueError(
            f"{argument} has {len(tokens)} entries but the maps have {count} {noun}; pass one "
            "token per position (special tokens such as [CLS] and [SEP] included)"
        )


def shown_tokens(tokens: list[str], scheme: str | None) -> list[str]:
    """What a view shows for each token: the prettified text, newlines and tabs as visible marks."""
    shown = []
    for token in pretty_tokens(tokens, scheme):
        text = token.text.replace("\r\n", "\u21b5").replace("\n", "\u21b5").replace("\t", "\u21e5")
        if not text and token.raw:  # the first bytes of a character the next piece completes
            text = "\u22ef"
        shown.append(text if text.strip() or not text else text.replace(" ", "\u2423"))
    return shown


def _token_config(tokens, key_tokens, scheme) -> dict:
    return {
        "tokens": shown_tokens(tokens, scheme),
        "raw_tokens": tokens,
        "key_tokens": None if key_tokens is None else shown_tokens(key_tokens, scheme),
        "raw_key_tokens": key_tokens,
    }


def check_tokens(tokens, argument: str) -> list[str]:
    """``tokens`` as a list of str, one per position; TypeError naming ``argument`` otherwise."""
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
