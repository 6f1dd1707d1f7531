"""AttentionMaps with declared structure, for the tests of everything that reads them.

>>> maps = build([(info("enc.0.attn", 0, role="encoder"), [tensor])])     # through MapsBuilder
>>> model, maps, images = captured_swin()          # a real timm Swin, its windowed layers declared
>>> model, maps, images = captured_xcit()          # a real timm XCiT, its XCA layers channels
>>> model, maps, inputs, eager = captured_seq2seq("bart")   # a tiny BART, and its eager attentions

The timm adapter is being taught windows and channels in parallel; until it declares them,
the real captures here are re-declared through ``MapsBuilder`` (the documented internal
builder) with the layout the model's own attributes give (``window_size``, ``shift_size``,
``input_resolution``; XCiT's ``XCA`` class). Once the adapter declares them itself, its
layouts are used as they come. Imported by the other test folders as ``analysis.declared_maps``.
"""

from __future__ import annotations

import dataclasses
import math

import torch

from visualizer import capture_attention
from visualizer._maps import MapsBuilder
from visualizer._structure import CHANNELS, TOKENS, LayerInfo, Tokens, Windows

__all__ = ["build", "captured_seq2seq", "captured_swin", "captured_vit", "captured_xcit", "info", "softmax"]


def softmax(*shape, seed=0):
    """Random attention probabilities, rows summing to 1."""
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).softmax(-1)


def info(path, index, *, role=None, kind="self", block=None, depth=None, layout=TOKENS):
    """A LayerInfo as an adapter would declare it; block: the path's parent; depth: the index."""
    block = path.rsplit(".", 1)[0] if block is None else block
    return LayerInfo(path, index, role, kind, block, index if depth is None else depth, layout, "test")


def build(layers, model="Model", modules=None):
    """An AttentionMaps from ``[(LayerInfo, [call, ...] or one map, layout or None), ...]``."""
    builder = MapsBuilder(model, len(layers) if modules is None else modules)
    for entry in layers:
        declared, calls, layout = (*entry, None) if len(entry) == 2 else entry
        handle = builder.add(dataclasses.replace(declared, calls=0))
        for call in calls if isinstance(calls, (list, tuple)) else [calls]:
            builder.ran(handle)
            builder.record(handle, call, layout)
    return builder.maps


def redeclared(maps, layouts: dict):
    """``maps`` again, with ``layouts[path]`` where the capture still said tokens."""
    rows = []
    for position, declared in enumerate(maps.infos):
        layout = declared.layout
        if isinstance(layout, Tokens) and declared.path in layouts:
            layout = layouts[declared.path]
        rows.append((dataclasses.replace(declared, layout=layout), maps.calls(position), layout))
    return build(rows, maps.model_name, modules=len(maps.selected))


def captured_swin(img_size=56, batch=2, seed=0):
    """A tiny random timm Swin (14 x 14 then 7 x 7 tokens, 7 x 7 windows), captured on ``batch`` images.

    Stage 0 has a plain and a shifted block (2 x 2 windows, shift 3); stage 1 is one window.
    """
    import timm

    torch.manual_seed(seed)
    model = timm.create_model(
        "swin_tiny_patch4_window7_224",
        pretrained=False,
        img_size=img_size,
        depths=(2, 2),
        num_heads=(1, 2),
        embed_dim=16,
        window_size=7,
    ).eval()
    images = torch.rand(batch, 3, img_size, img_size, generator=torch.Generator().manual_seed(seed))
    with capture_attention(model) as maps, torch.no_grad():
        model(images)
    layouts = {}
    for name, block in model.named_modules():
        if type(block).__name__ == "SwinTransformerBlock":
            rows, cols = (int(n) for n in block.input_resolution)
            wh, ww = (int(n) for n in block.window_size)
            grid = (math.ceil(rows / wh), math.ceil(cols / ww))
            shift = tuple(int(n) for n in block.shift_size)
            layouts[f"{name}.attn"] = Windows(window=(wh, ww), grid=grid, shift=shift, tokens=(rows, cols))
    return model, redeclared(maps, layouts), images


def captured_xcit(img_size=32, seed=0):
    """A tiny random timm XCiT: two XCA blocks (channels) and two class-attention blocks (tokens)."""
    import timm
    from timm.models.xcit import XCA

    torch.manual_seed(seed)
    model = timm.create_model(
        "xcit_nano_12_p16_224", pretrained=False, img_size=img_size, depth=2, embed_dim=16, num_heads=2
    ).eval()
    images = torch.rand(1, 3, img_size, img_size, generator=torch.Generator().manual_seed(seed))
    with capture_attention(model) as maps, torch.no_grad():
        model(images)
    channels = {name: CHANNELS for name, module in model.named_modules() if isinstance(module, XCA)}
    return model, redeclared(maps, channels), images


def captured_vit(layers=None):
    """A tiny random timm ViT (CLS + 4 x 4 patches, 3 layers of 2 heads) captured with its fused
    kernel kept on 2 images; ``layers`` as for ``capture_attention``."""
    import timm

    torch.manual_seed(0)
    model = timm.create_model(
        "vit_tiny_patch16_224",
        pretrained=False,
        img_size=32,
        patch_size=8,
        embed_dim=16,
        depth=3,
        num_heads=2,
    ).eval()
    with capture_attention(model, layers=layers) as maps, torch.no_grad():
        model(torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)))
    return maps


def captured_seq2seq(kind="bart", src=5, tgt=4, seed=0):
    """A tiny random BART or T5 captured by capture_attention, and its eager ``output_attentions``.

    Returns ``(model, maps, (input_ids, decoder_input_ids), out)`` with ``out`` the eager
    forward's encoder_attentions, decoder_attentions and cross_attentions.
    """
    import transformers

    torch.manual_seed(seed)
    if kind == "bart":
        config = transformers.BartConfig(
            vocab_size=50,
            d_model=16,
            encoder_layers=2,
            decoder_layers=2,
            encoder_attention_heads=2,
            decoder_attention_heads=2,
            encoder_ffn_dim=32,
            decoder_ffn_dim=32,
            max_position_embeddings=32,
        )
        model = transformers.BartForConditionalGeneration(config)
    else:
        config = transformers.T5Config(
            vocab_size=50,
            d_model=16,
            d_kv=8,
            d_ff=32,
            num_layers=2,
            num_decoder_layers=2,
            num_heads=2,
            decoder_start_token_id=0,
        )
        model = transformers.T5ForConditionalGeneration(config)
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, 50, (1, src), generator=generator)
    decoder_ids = torch.randint(3, 50, (1, tgt), generator=generator)
    with capture_attention(model) as maps, torch.no_grad():
        model(input_ids=ids, decoder_input_ids=decoder_ids)
    model.set_attn_implementation("eager")
    with torch.no_grad():
        out = model(input_ids=ids, decoder_input_ids=decoder_ids, output_attentions=True)
    return model, maps, (ids, decoder_ids), out
