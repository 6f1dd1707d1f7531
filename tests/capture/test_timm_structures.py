"""Declared structure of timm attentions: CaiT talking heads and class attention, Swin windows, XCiT channels.

Every map is checked against a computation written here from the module's weights and its input.
"""

import pytest
import torch
import torch.nn.functional as F

from visualizer import LayoutError, capture_attention
from visualizer._structure import CHANNELS, TOKENS, Tokens, Windows, require_tokens

timm = pytest.importorskip("timm")


def inputs_of(modules):
    """Each module's first positional input on the next forwards, via pre-hooks (remove them after)."""
    seen = {module: [] for module in modules}
    hooks = [m.register_forward_pre_hook(lambda m, a: seen[m].append(a[0].detach())) for m in modules]
    return seen, hooks


# -- CaiT -----------------------------------------------------------------------------------------


@pytest.fixture
def tiny_cait():
    torch.manual_seed(0)
    model = timm.create_model(
        "cait_xxs24_224",
        pretrained=False,
        num_classes=0,
        img_size=32,
        depth=2,
        depth_token_only=1,
        embed_dim=32,
        num_heads=2,
    )
    return model.eval()


def talking_heads(attn, x):
    """TalkingHeadAttn's map as the block uses it: softmax of proj_l-mixed logits, mixed again by proj_w."""
    b, n, c = x.shape
    q, k, _ = attn.qkv(x).reshape(b, n, 3, attn.num_heads, c // attn.num_heads).permute(2, 0, 3, 1, 4)
    logits = (q * attn.scale) @ k.transpose(-2, -1)
    logits = attn.proj_l(logits.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    return attn.proj_w(torch.softmax(logits, dim=-1).permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def class_attention(attn, x):
    """ClassAttn: the class token queries every token."""
    b, n, c = x.shape
    h = attn.num_heads
    q = attn.q(x[:, :1]).reshape(b, 1, h, c // h).transpose(1, 2)
    k = attn.k(x).reshape(b, n, h, c // h).transpose(1, 2)
    return torch.softmax((q @ k.transpose(-2, -1)) * attn.scale, dim=-1)


def test_cait_talking_heads_and_class_attention_are_captured_as_computed(tiny_cait):
    heads = [block.attn for block in tiny_cait.blocks]
    token_only = [block.attn for block in tiny_cait.blocks_token_only]
    seen, hooks = inputs_of(heads + token_only)
    with torch.no_grad(), capture_attention(tiny_cait) as maps:
        tiny_cait(torch.randn(2, 3, 32, 32))
    for hook in hooks:
        hook.remove()
    assert maps.names == ["blocks.0.attn", "blocks.1.attn", "blocks_token_only.0.attn"]
    with torch.no_grad():
        for i, attn in enumerate(heads):
            expected = talking_heads(attn, seen[attn][0])
            assert maps[i].shape == (2, 2, 4, 4)
            torch.testing.assert_close(maps[i], expected, atol=1e-5, rtol=0)
            # mixed after the softmax: not a probability distribution any more
            assert not torch.allclose(maps[i].sum(-1), torch.ones(2, 2, 4))
        (attn,) = token_only
        # the class attention block sees the patch tokens with the class token in front
        expected = class_attention(attn, seen[attn][0])
    captured = maps["blocks_token_only.0.attn"]
    assert captured.shape == (2, 2, 1, 5)
    torch.testing.assert_close(captured, expected, atol=1e-6, rtol=0)
    # The talking-heads blocks see the 2 x 2 patches alone; the class attention block the class token too.
    for path, block, prefix in [
        ("blocks.1.attn", "blocks.1", 0),
        ("blocks_token_only.0.attn", "blocks_token_only.0", 1),
    ]:
        info = maps.info(path)
        assert (info.kind, info.role, info.block) == ("self", None, block)
        assert info.layout == Tokens(prefix=prefix, grid=(2, 2))
    assert all(attn.fused_attn for attn in token_only)  # switched back


# -- Swin -----------------------------------------------------------------------------------------


@pytest.fixture
def tiny_swin():
    torch.manual_seed(0)
    model = timm.create_model(
        "swin_tiny_patch4_window7_224",
        pretrained=False,
        num_classes=0,
        img_size=64,
        depths=(2, 2),
        embed_dim=16,
        num_heads=(2, 2),
    )
    return model.eval()


def swin_reference(block, x):
    """(batch, heads, H*W, H*W): the block's masked window attention, put on the token grid by hand.

    Written from Swin's definition: roll the (H, W) grid by -shift, pad it to whole windows,
    cut it into windows, attend inside each window (relative position bias, the block's shift
    mask), and send each entry to the pair of tokens it links; zeros between windows.
    """
    attn = block.attn
    b, rows, cols, c = x.shape
    (wh, ww), (sh, sw) = block.window_size, block.shift_size
    index = torch.arange(rows * cols).reshape(1, rows, cols, 1).float()
    shifted = torch.roll(torch.cat([x, index.expand(b, -1, -1, 1)], -1), (-sh, -sw), dims=(1, 2))
    pad_h, pad_w = -rows % wh, -cols % ww
    shifted = F.pad(shifted, (0, 0, 0, pad_w, 0, pad_h), value=0.0)
    shifted[:, rows:, :, -1] = -1  # padding positions
    shifted[:, :, cols:, -1] = -1
    gh, gw = shifted.shape[1] // wh, shifted.shape[2] // ww
    windows = (
        shifted.reshape(b, gh, wh, gw, ww, c + 1).permute(0, 1, 3, 2, 4, 5).reshape(b, gh * gw, wh * ww, -1)
    )
    tokens, where = windows[..., :c], windows[0, :, :, -1].long()  # where: (windows, n) token or -1
    heads = attn.num_heads
    q, k, _ = attn.qkv(tokens).reshape(b, gh * gw, wh * ww, 3, heads, -1).permute(3, 0, 1, 4, 2, 5)
    logits = (q * attn.scale) @ k.transpose(-2, -1) + attn._get_rel_pos_bias()[:, None]  # (b, nw, h, n, n)
    if block.attn_mask is not None:
        logits = logits + block.attn_mask[None, :, None]
    probs = logits.softmax(-1)
    out = torch.zeros(b, heads, rows * cols, rows * cols)
    for w in range(gh * gw):
        real = (where[w] >= 0).nonzero().flatten()
        tok = where[w][real]
        out[:, :, tok[:, None], tok[None, :]] = probs[:, w][:, :, real[:, None], real[None, :]]
    return out


def test_swin_windows_are_declared_per_call_and_scatter_back_onto_the_grid(tiny_swin):
    blocks = list(tiny_swin.layers[0].blocks) + list(tiny_swin.layers[1].blocks)
    seen, hooks = inputs_of(blocks)
    with torch.no_grad(), capture_attention(tiny_swin) as maps:
        tiny_swin(torch.randn(2, 3, 64, 64))
    for hook in hooks:
        hook.remove()
    # 64 px / patch 4 = 16 x 16 tokens: padded to 3 x 3 windows of 7; stage 2 has 8 x 8 tokens
    assert maps.layout("layers.0.blocks.0.attn") == Windows(
        window=(7, 7), grid=(3, 3), shift=(0, 0), tokens=(16, 16), shift_before_pad=True
    )
    assert maps.layout("layers.0.blocks.1.attn") == Windows(
        window=(7, 7), grid=(3, 3), shift=(3, 3), tokens=(16, 16), shift_before_pad=True
    )
    assert maps.layout("layers.1.blocks.1.attn") == Windows(
        window=(7, 7), grid=(2, 2), shift=(3, 3), tokens=(8, 8), shift_before_pad=True
    )
    assert maps["layers.0.blocks.1.attn"].shape == (2 * 9, 2, 49, 49)
    info = maps.info("layers.0.blocks.1.attn")
    assert (info.kind, info.role, info.block) == ("self", None, "layers.0.blocks.1")
    with torch.no_grad():
        for block, path in zip(blocks, maps.names):
            x = block.norm1(seen[block][0])
            scattered = maps.scatter(path)
            tokens = x.shape[1] * x.shape[2]
            assert scattered.shape == (2, 2, tokens, tokens)
            torch.testing.assert_close(scattered, swin_reference(block, x), atol=1e-5, rtol=0)
            # a query never attends to a token of another window: those entries are exactly zero
            # (shifted windows also mask the wrapped-around regions to ~e-100)
            if not any(block.shift_size):
                window_of = torch.tensor([(i // 16 // 7) * 3 + (i % 16) // 7 for i in range(tokens)])
                if tokens == 256:
                    other = window_of[:, None] != window_of[None, :]
                    assert (scattered[:, :, other] == 0).all() and (scattered[:, :, ~other] > 0).all()


def test_swin_window_attention_outside_its_block_is_refused_not_mislabelled(tiny_swin):
    attn = tiny_swin.layers[0].blocks[0].attn
    # alone, it cannot know its windows: refused with the reason rather than captured as tokens
    with pytest.raises(ValueError, match="runs outside the block that cuts its windows"):
        capture_attention(attn).start()


# -- XCiT -----------------------------------------------------------------------------------------


def test_xcit_cross_covariance_attention_is_channels_and_refuses_token_use():
    torch.manual_seed(0)
    model = timm.create_model(
        "xcit_nano_12_p16_224",
        pretrained=False,
        num_classes=0,
        img_size=32,
        depth=1,
        embed_dim=32,
        num_heads=2,
    ).eval()
    xca = model.blocks[0].attn
    seen, hooks = inputs_of([xca])
    with torch.no_grad(), capture_attention(model) as maps:
        model(torch.randn(2, 3, 32, 32))
    for hook in hooks:
        hook.remove()
    path = "blocks.0.attn"
    assert maps.layout(path) == CHANNELS and maps.info(path).kind == "self"
    with torch.no_grad():
        x = seen[xca][0]
        b, n, c = x.shape
        q, k, _ = xca.qkv(x).reshape(b, n, 3, 2, c // 2).permute(2, 0, 3, 4, 1)  # (b, heads, channels, n)
        expected = (
            (F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1)) * xca.temperature
        ).softmax(-1)
    assert maps[path].shape == (2, 2, 16, 16)  # channels per head, not tokens
    torch.testing.assert_close(maps[path], expected, atol=1e-6, rtol=0)
    with pytest.raises(LayoutError, match="channels"):
        require_tokens(maps.layout(path), path)
    with pytest.raises(LayoutError, match="channels"):
        maps.scatter(path)
    # the class attention layers after it are token attention
    assert [maps.layout(name) for name in maps.names[1:]] == [TOKENS, TOKENS]
