"""``image_view``: hover a patch to see its attention over the image.

>>> view = image_view(cache["Attention.forward"], image, prefix_tokens=1)   # a ViT with CLS
>>> view.save("vit_attention.html")
>>> image_view(maps, image, relevance=explain(vit, pixels, target=207))   # and a relevance panel

The maps are self-attention over ``prefix_tokens`` leading tokens (CLS, registers) followed
by the patches in row-major order: (batch, heads, T, T) with T = prefix_tokens + rows * cols.
``image`` is the picture as the model saw it (after resizing and cropping), (H, W, 3) uint8
or float in [0, 1]; the patch grid is laid over the whole of it.

With ``relevance`` a third panel shows the patches shaded by their relevance scores, named
under it (method, target, position) with a colour bar (:mod:`visualizer.view._relevance`); the
prefix tokens' scores are written out. A Relevance must be over the view's prefix tokens and
patch grid, which it gives the view when the maps declare none.
"""

from __future__ import annotations

from visualizer._arrays import as_maps, as_rgb_uint8, declared_defaults, patch_grid
from visualizer._maps import AttentionMaps
from visualizer.plots._colors import ATTENTION_CMAP, colormap_table
from visualizer.view._attention_view import AttentionView
from visualizer.view._codec import encode_maps
from visualizer.view._document import check_title, plural, render_fragment
from visualizer.view._image import png_base64
from visualizer.view._maps import initial_head, initial_layer, stack_layers
from visualizer.view._relevance import check_layout, relevance_layout, relevance_panel

__all__ = ["declared_geometry", "image_panel", "image_view"]

_PANEL_PX = 336  # longest side of each image panel, in CSS pixels


def image_view(
    attentions,
    image,
    *,
    grid=None,
    prefix_tokens: int | None = None,
    layers=None,
    heads=None,
    layer=None,
    head="mean",
    cmap=ATTENTION_CMAP,
    batch: int = 0,
    title: str | None = None,
    relevance=None,
) -> AttentionView:
    """An interactive view of a vision transformer's attention over ``image``.

    - ``grid``: the patch grid (rows, cols); by default the one a capture declared (the
      first kept layer's), else a square grid, or else the factor pair of the patch count
      that matches the image's aspect ratio;
    - ``prefix_tokens``: tokens before the patches: 1 for a ViT's CLS, 5 for DINOv2 with
      4 registers, 0 for none; by default what a capture declared, else 1. They get buttons
      ("CLS", "reg1", ...) to show their rows;
    - ``layers``, ``heads``: indices to keep (negative ones count from the end), to focus or
      to make the file smaller; ``batch``: which item of a batched map;
    - ``layer``: the layer the view opens on (an index into all layers, one of those kept);
      None: the kept layer two thirds of the way down, ``(2 * kept) // 3`` (layer 8 of 12),
      not the last: a DINOv2's last layer is dominated by its artefact tokens;
    - ``head``: the head it opens on (an index, one of those kept) or ``"mean"`` (default);
    - ``cmap``: the heat map's colours, a matplotlib colour map (name or Colormap; sampled at
      64 steps when the view is built, so this needs matplotlib), by default the one of every
      figure (``visualizer.plots._colors.ATTENTION_CMAP``);
    - ``relevance``: what :func:`visualizer.explain` returns, or plain scores, (tokens,) or
      (batch, tokens), one per token, prefix tokens included: a third panel shows them.
    """
    attentions = as_maps(attentions, "image_view(): attentions").maps
    stack = stack_layers(attentions, batch=batch, layers=layers, heads=heads)
    declared = attentions.layout(stack.layer_index[0])
    given = relevance_layout(relevance)
    if getattr(declared, "grid", None) is None and getattr(given, "grid", None) is not None:
        declared = given  # plain maps: the relevance knows the geometry
    grid, prefix_tokens = declared_defaults(grid, prefix_tokens, declared)
    start_layer = initial_layer(stack, layer, "image_view()")
    start_head = initial_head(stack, head, ("mean",), "image_view()")
    _, _, queries, keys = stack.maps.shape
    if queries != keys:
        raise ValueError(
            f"image_view needs self-attention maps (as many queries as keys); got {queries} "
            f"queries and {keys} keys"
        )
    panel, png = image_panel(image, keys, grid=grid, prefix_tokens=prefix_tokens, cmap=cmap)
    rows, cols = panel["grid"]
    title = check_title(
        title, "Attention over the image" if relevance is None else "Attention and relevance over the image"
    )
    extra = {"tvz-image": png}
    relevance_meta = None
    if relevance is not None:
        check_layout(relevance, rows, cols, prefix_tokens, "image_view()")
        relevance_meta, extra["tvz-relevance"] = relevance_panel(
            relevance,
            count=keys,
            batch=batch,
            what="image_view()",
            shaded=slice(prefix_tokens, None),
            names=panel["prefix"] + [f"patch (row {p // cols}, col {p % cols})" for p in range(rows * cols)],
            counts=f"{prefix_tokens} + {rows}x{cols} patches",
        )
    payload, meta = encode_maps(stack.maps, exact_keys=prefix_tokens)
    config = {
        "kind": "image",
        "title": title,
        "layers": stack.layer_labels,
        "heads": stack.head_labels,
        "maps": meta,
        **panel,
        # Start where a ViT is most telling: the CLS row of a middle-to-late layer, or the middle patch.
        "initial": {"layer": start_layer, "head": start_head, "query": panel["start_query"]},
    }
    if relevance_meta is not None:
        config["relevance"] = relevance_meta
    fragment = render_fragment("image", config, payload, extra_scripts=extra)
    summary = (
        f"{plural(len(stack.layer_labels), 'layer')} x {plural(len(stack.head_labels), 'head')}, "
        f"{keys} tokens ({prefix_tokens} + {rows}x{cols} patches)"
    )
    height = 200 + panel["panel"][1]
    if relevance_meta is not None:
        summary += f", relevance ({relevance_meta['method'] or 'scores'})"
        height += panel["panel"][1] + 90  # a third panel wraps below the two others in a narrow frame
    return AttentionView("image", fragment, title=title, height=height, summary=summary)


def declared_geometry(maps: AttentionMaps, kept, grid, prefix_tokens) -> tuple:
    """``(grid, prefix_tokens)`` for a view: each as given, else what the capture declared for the
    first of the ``kept`` layer positions (:func:`~visualizer._arrays.declared_defaults`), else
    None and 1."""
    return declared_defaults(grid, prefix_tokens, maps.layout(kept[0]))


def image_panel(
    image, keys: int, *, grid=None, prefix_tokens: int = 1, cmap=ATTENTION_CMAP
) -> tuple[dict, str]:
    """What the image view's script needs besides the maps, and the picture as a base64 PNG.

    ``({"grid": [rows, cols], "prefix": ["CLS", ...], "panel": [width, height], "colormap": [...],
    "start_query": q}, png)`` for maps of ``keys`` tokens; the checks and errors of :func:`image_view`.
    """
    if isinstance(prefix_tokens, bool) or not isinstance(prefix_tokens, int):
        raise TypeError(f"prefix_tokens must be an int; got {type(prefix_tokens).__name__}")
    if not 0 <= prefix_tokens < keys:
        raise ValueError(
            f"prefix_tokens must be from 0 to {keys - 1} (the maps have {keys} tokens); got {prefix_tokens}"
        )
    rgb = as_rgb_uint8(image, "image")
    height, width, _ = rgb.shape
    rows, cols = patch_grid(keys, grid, prefix_tokens, "image_view()", aspect=width / height)
    scale = _PANEL_PX / max(height, width)
    prefix = ["CLS"] + [f"reg{i}" for i in range(1, prefix_tokens)] if prefix_tokens else []
    panel = {
        "grid": [rows, cols],
        "prefix": prefix,
        "panel": [max(1, round(width * scale)), max(1, round(height * scale))],
        "colormap": colormap_table(cmap),
        "start_query": 0 if prefix_tokens else (rows // 2) * cols + cols // 2,
    }
    return panel, png_base64(rgb)
