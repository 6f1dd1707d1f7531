"""``model_view``: every layer x head at a glance, one small heat map each; click one for detail.

>>> view = model_view(maps, tokens)                  # text: the detail panel is the head view
>>> view = model_view(maps, image=picture)           # a ViT: the detail panel is the image view
>>> view = model_view(maps, encoder_tokens, decoder_tokens=decoder_tokens)   # BART, T5, nn.Transformer
>>> view.save("model.html")

Each cell is one head's (queries, keys) map in the colour map of the figures, scaled to its
own largest weight. Long sequences are not dropped but DOWNSAMPLED: each map is averaged over
blocks of tokens until it has at most ``thumb`` x ``thumb`` cells (a 4,096-token map at
``thumb=64``: blocks of 64 x 64 tokens), and the view says by how much. The detail panel of a
clicked cell shows the full map (head view or image view) where it is sent, i.e. for text
of up to :data:`DETAIL_TOKENS` tokens with ``tokens=`` given, or for ``image=``; otherwise a
larger heat map, block-averaged to at most :data:`DETAIL_CELLS` cells a side, with the
tokens of each block on hover.

The maps are read one layer at a time (an ``AttentionMaps`` never has two layers built), and
an encoder-decoder capture shows its rows grouped as encoder self, decoder self and cross.
"""

from __future__ import annotations

import numpy as np

from visualizer._arrays import pick_layers, read_item
from visualizer._blockwise import ROWS
from visualizer._maps import AttentionMaps
from visualizer._validate import indices, positive_int
from visualizer.plots._colors import ATTENTION_CMAP, colormap_table
from visualizer.view._attention_view import AttentionView
from visualizer.view._bertviz import SENTENCES, Arguments, finish, sentence_parts
from visualizer.view._codec import encode_maps
from visualizer.view._document import check_title, plural, render_fragment
from visualizer.view._downsample import block_average, block_means
from visualizer.view._head_view import check_tokens, shown_tokens
from visualizer.view._image_view import declared_geometry, image_panel
from visualizer.view._maps import check_weights
from visualizer.view._sections import keep_layers, sections

__all__ = ["DETAIL_CELLS", "DETAIL_TOKENS", "model_view"]

#: Longest sequence whose full maps the detail panel gets (as a head view) when tokens are given.
DETAIL_TOKENS = 512
#: Largest side of the heat map the detail panel shows for longer sequences (or without tokens).
DETAIL_CELLS = 256


def model_view(
    attentions=None,
    tokens=None,
    sentence_b_start=None,
    prettify_tokens=True,
    display_mode: str | None = None,
    encoder_attention=None,
    decoder_attention=None,
    cross_attention=None,
    encoder_tokens=None,
    decoder_tokens=None,
    include_layers=None,
    include_heads=None,
    html_action=None,
    *,
    attention=None,
    image=None,
    key_tokens=None,
    layers=None,
    heads=None,
    batch: int = 0,
    title: str | None = None,
    thumb: int = 64,
    grid=None,
    prefix_tokens: int | None = None,
    scheme: str | None = None,
    cmap=ATTENTION_CMAP,
) -> AttentionView | None:
    """A grid of layers x heads, each a small heat map of its map; click one to see it in detail.

    The positional arguments are bertviz's, with bertviz's meaning (``model_view(attention,
    tokens, sentence_b_start, prettify_tokens, display_mode, ...)``); see the guide's "Coming
    from bertviz".

    - ``attentions`` (bertviz: ``attention``): an ``AttentionMaps`` (rows labelled with its
      declared module paths) or plain maps (:meth:`AttentionMaps.from_arrays`); or, as in
      bertviz, ``encoder_attention=``, ``decoder_attention=`` and ``cross_attention=`` with
      ``encoder_tokens=`` and ``decoder_tokens=``;
    - ``tokens``: one string per position (prettified as in the head view, ``scheme=``;
      ``prettify_tokens=False`` is "raw"): the detail panel is then the head view of that
      layer, opened on the clicked head; for an encoder-decoder model, the encoder's tokens,
      with ``decoder_tokens`` the decoder's; ``key_tokens``: the keys' tokens of plain
      cross-attention maps;
    - ``sentence_b_start``: the first token of the second sentence of a pair: a selector shows
      all the attention, or that from sentence A or B to sentence A or B;
    - ``image``: the picture a vision transformer saw ((H, W, 3)): the detail panel is the
      image view; ``grid`` and ``prefix_tokens`` as in :func:`~visualizer.view.image_view`;
    - ``layers`` (bertviz: ``include_layers``), ``include_heads``: indices to keep; ``batch``:
      which item of a batched map;
    - ``thumb``: the most cells a side of each small map (block-averaged beyond that);
    - ``cmap``: the colour map, by default the one of every figure; ``display_mode``: the
      theme it opens with, "light" or "dark" (None: the system's);
    - ``html_action``: None returns the view; "view" displays it and returns None; "return"
      returns it (its ``.data`` is the HTML), as bertviz does.
    """
    what = "model_view()"
    if heads is not None:
        raise TypeError(f"{what}: heads= is now include_heads= (the heads the page holds), bertviz's name")
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
        scheme=scheme,
        prettify_tokens=prettify_tokens,
        display_mode=display_mode,
        html_action=html_action,
    )
    thumb = positive_int(thumb, f"{what}: thumb")
    if isinstance(batch, bool) or not isinstance(batch, int):
        raise TypeError(f"batch must be an int; got {type(batch).__name__}")
    tokens = args.tokens
    if image is not None and (tokens is not None or decoder_tokens is not None):
        raise ValueError("pass tokens= for text or image= for a picture, not both")
    title = check_title(title, "Attention: every layer and head")
    attentions = args.maps
    count = len(attentions)
    groups = sections(attentions)
    if groups is None:
        if decoder_tokens is not None:
            raise ValueError(
                "decoder_tokens= is for an AttentionMaps of an encoder-decoder model; these maps declare "
                "no cross-attention. Drop decoder_tokens=, or pass key_tokens= for plain cross-attention"
            )
        groups = [(None, indices(args.layers, count, "layers", "layer"))]
    else:
        if image is not None:
            raise ValueError(
                "image= needs self-attention maps of a vision model, not an encoder-decoder capture"
            )
        if key_tokens is not None or sentence_b_start is not None:
            raise ValueError(
                "key_tokens= and sentence_b_start= are not for an encoder-decoder model's maps: pass tokens= "
                "(the encoder's) and decoder_tokens="
            )
        groups = keep_layers(groups, args.layers, count)
        if tokens is not None and decoder_tokens is None:
            raise ValueError(
                "these maps come from an encoder-decoder model: pass decoder_tokens= besides tokens= (the "
                "encoder's), or neither"
            )
    chosen = [position for _, positions in groups for position in positions]
    for name, positions in groups:  # tokens layouts; within a section, one shape
        pick_layers(attentions, positions, "attentions")
    if image is not None:
        grid, prefix_tokens = declared_geometry(attentions, chosen, grid, prefix_tokens)
    tokens = None if tokens is None else check_tokens(tokens, "tokens")
    decoder_tokens = None if decoder_tokens is None else check_tokens(decoder_tokens, "decoder_tokens")
    key_tokens = None if key_tokens is None else check_tokens(key_tokens, "key_tokens")
    plan = [(name, attentions, positions, tokens, key_tokens, batch) for name, positions in groups]
    if sentence_b_start is not None:
        plan = _sentences(attentions, chosen, sentence_b_start, tokens, key_tokens, batch, what)

    rows, thumbs, extra, token_sets = [], [], {}, {}
    setup = {"heads": args.heads, "image": None}
    options = {
        "decoder_tokens": decoder_tokens,
        "image": image,
        "scheme": args.scheme,
        "grid": grid,
        "prefix_tokens": prefix_tokens,
        "cmap": cmap,
        "token_sets": token_sets,
    }
    for name, group_maps, positions, group_tokens, group_keys, item in plan:
        options.update(tokens=group_tokens, key_tokens=group_keys)
        for position in positions:
            row, small, payload = _layer(group_maps, position, name, item, thumb, setup, options)
            row["data"] = f"tvz-layer-{len(rows)}"
            extra[row["data"]] = payload
            rows.append(row)
            thumbs.append(small)
    head_index, image_setup = setup["head_index"], setup["image"]
    size_q = max(t.shape[1] for t in thumbs)
    size_k = max(t.shape[2] for t in thumbs)
    padded = np.zeros((len(thumbs), len(head_index), size_q, size_k), dtype=np.float32)
    for number, small in enumerate(thumbs):
        padded[number, :, : small.shape[1], : small.shape[2]] = small
    payload, meta = encode_maps(padded, bits=8)
    config = {
        "kind": "model",
        "title": title,
        "layers": [row["label"] for row in rows],
        "heads": [str(h) for h in head_index],
        "maps": meta,
        "rows": rows,
        "token_sets": token_sets,
        "sections": [group[0] for group in plan] if plan[0][0] is not None else None,
        "choose_section": sentence_b_start is not None,  # bertviz's sentence filter: one at a time
        "thumb": thumb,
        "colormap": colormap_table(cmap),
        "initial": {"row": None, "head": None},
        "theme": args.theme,
    }
    if image_setup is not None:
        panel, png = image_setup
        config["image"] = panel
        extra["tvz-image"] = png
    fragment = render_fragment("model", config, payload, extra_scripts=extra)
    longest = max(max(row["shape"]) for row in rows)
    shown = len(rows) // len(plan) if sentence_b_start is not None else len(rows)  # one choice at a time
    summary = f"{plural(shown, 'layer')} x {plural(len(head_index), 'head')}, up to {longest} tokens"
    height = 160 + shown * 76 + 40 * len(groups) + 560
    view = AttentionView("model", fragment, title=title, height=height, summary=summary)
    return finish(view, args.action)


def _sentences(maps, chosen, start, tokens, key_tokens, batch: int, what: str) -> list[tuple]:
    """The rows of bertviz's sentence filter: for each choice, the kept layers cut to its tokens."""
    if tokens is None or key_tokens is not None:
        raise ValueError(f"{what}: sentence_b_start= needs tokens= (a sentence pair's, one per position)")
    if maps.shape(chosen[0])[2] != maps.shape(chosen[0])[3]:
        raise ValueError(f"{what}: sentence_b_start= is for self-attention over a sentence pair")
    parts = sentence_parts(start, len(tokens), what)
    plan = []
    for name, q, k in SENTENCES:
        cut = {maps.names[i]: maps.read(i, batch=[batch])[:, :, parts[q], parts[k]] for i in chosen}
        part_keys = None if q == k else tokens[parts[k]]
        plan.append(
            (name, AttentionMaps.from_arrays(cut), range(len(chosen)), tokens[parts[q]], part_keys, 0)
        )
    return plan


def _layer(attentions, position: int, name, batch: int, thumb: int, setup: dict, args: dict):
    """One row of the grid: ``(row config, thumbnail (heads, q, k), detail payload)``.

    The full map is read only where the detail panel gets it (a head view of at most
    :data:`DETAIL_TOKENS` tokens, an image view); for a longer map the block means are summed
    one row block at a time, so not even that layer is held whole.
    """
    tokens, decoder_tokens, image, scheme = (
        args["tokens"],
        args["decoder_tokens"],
        args["image"],
        args["scheme"],
    )
    _, count, queries, keys = attentions.shape(position)
    heads = _head_index(setup, count, position)
    detail = "image" if image is not None else "head" if tokens is not None else "heatmap"
    if detail == "head" and max(queries, keys) > DETAIL_TOKENS:
        detail = "heatmap"
    if detail == "heatmap":
        blocks = _row_blocks(attentions, position, batch, heads)
        (small, steps), (large, detail_steps) = block_means(
            blocks, len(heads), queries, keys, (thumb, DETAIL_CELLS)
        )
    else:
        what = f"attentions[{position}]"
        weights = check_weights(
            read_item(attentions, position, batch, what, heads=heads).astype(np.float32), what
        )
        small, steps = block_average(weights, thumb)
    row = {
        "label": attentions.info(position).path,
        "layer": position,
        "section": name,
        "shape": [queries, keys],
        "size": list(small.shape[1:]),
        "block": list(steps),
        "detail": detail,
    }
    if detail == "image":
        if setup["image"] is None:
            setup["image"] = image_panel(
                image, keys, grid=args["grid"], prefix_tokens=args["prefix_tokens"], cmap=args["cmap"]
            )
        rows_, cols = setup["image"][0]["grid"]
        prefix = args["prefix_tokens"]
        if queries != keys or keys != rows_ * cols + prefix:
            raise ValueError(
                f"attentions[{position}] is {queries} x {keys}: the image view needs self-attention "
                f"over the same {prefix} prefix tokens and {rows_}x{cols} patches in every layer"
            )
        payload, row["maps"] = encode_maps(weights[None], exact_keys=prefix)
    elif detail == "head":
        payload, row["maps"] = encode_maps(weights[None])
    else:
        payload, row["maps"] = encode_maps(large[None])
        row["detail_block"] = list(detail_steps)
    if tokens is not None:
        row["tokens"] = _row_tokens(
            args["token_sets"],
            name,
            tokens,
            decoder_tokens,
            (queries, keys),
            scheme,
            position,
            args["key_tokens"],
        )
    return row, small, payload


def _head_index(setup: dict, count: int, position: int) -> list[int]:
    """The kept heads (chosen from the first layer's ``count``), checked against this layer's."""
    if "head_index" not in setup:
        setup["head_index"] = indices(setup["heads"], count, "heads", "head")
    elif count <= max(setup["head_index"]):
        raise ValueError(
            f"attentions[{position}] has {count} heads, fewer than the first layer kept; select heads= "
            "that every layer has"
        )
    return setup["head_index"]


def _row_blocks(attentions, position: int, batch: int, heads: list[int]):
    """``(first row, (heads, rows, keys) float32)`` blocks of one layer of item ``batch``, checked;
    only that item's rows are read (a rebuilt map: rebuilt for that item alone)."""
    what, queries = f"attentions[{position}]", attentions.shape(position)[2]
    for start in range(0, queries, ROWS):
        rows = slice(start, min(start + ROWS, queries))
        block = read_item(attentions, position, batch, what, rows=rows, heads=heads)
        yield start, check_weights(block, what).astype(np.float32)


def _row_tokens(
    token_sets: dict, name, tokens, decoder_tokens, shape, scheme, position: int, keys=None
) -> str:
    """The name of the query and key tokens of one row in ``token_sets`` (filled on first use),
    checked against its map's ``shape`` (queries, keys); ``keys``: the keys' tokens where they
    are not ``tokens`` (plain cross-attention, a part of a sentence pair)."""
    encoder_queries = name not in ("Decoder self", "Cross")
    query_tokens, query_name = (tokens, "tokens") if encoder_queries else (decoder_tokens, "decoder_tokens")
    key_tokens, key_name = (
        (decoder_tokens, "decoder_tokens") if name == "Decoder self" else (tokens, "tokens")
    )
    if keys is not None:
        key_tokens, key_name = keys, "key_tokens"
    for given, count, argument, noun in (
        (query_tokens, shape[0], query_name, "queries"),
        (key_tokens, shape[1], key_name, "keys"),
    ):
        if len(given) != count:
            raise ValueError(
                f"{argument} has {len(given)} entries but attentions[{position}] has {count} {noun}; "
                "pass one token per position (special tokens included)"
            )
    key = name or "self"
    if key not in token_sets:
        token_sets[key] = {
            "tokens": shown_tokens(query_tokens, scheme),
            "raw_tokens": query_tokens,
            "key_tokens": shown_tokens(key_tokens, scheme),
            "raw_key_tokens": key_tokens,
        }
    return key
