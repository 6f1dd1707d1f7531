"""get_local on unmodified third-party code and on a hand-written attention, checked independently."""

import importlib
import sys
import textwrap

import numpy as np
import pytest
import references
import timm
import torch
from timm.layers import Attention

from visualizer import CaptureWarning


@pytest.fixture
def tiny_vit():
    torch.manual_seed(0)
    model = timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, num_classes=0, img_size=32, depth=2
    ).eval()
    return model


def test_timm_attention_captured_in_place_matches_a_hand_computation(gl, tiny_vit):
    blocks_input = []
    hooks = [
        b.attn.register_forward_pre_hook(lambda m, a: blocks_input.append(a[0])) for b in tiny_vit.blocks
    ]
    original = Attention.forward.__code__
    gl("attn")(Attention.forward)
    try:
        for block in tiny_vit.blocks:
            block.attn.fused_attn = False
        gl.activate()
        image = torch.randn(2, 3, 32, 32)
        with torch.no_grad():
            tiny_vit(image)
        maps = gl.cache["Attention.forward"]
        assert len(maps) == 2 and maps[0].shape == (2, 3, 5, 5)
        for block, recorded, x in zip(tiny_vit.blocks, maps, blocks_input):
            with torch.no_grad():
                expected = references.timm_attention(block.attn, x).numpy()
            np.testing.assert_allclose(recorded, expected, atol=1e-6)
            np.testing.assert_allclose(recorded.sum(-1), 1.0, atol=1e-6)
    finally:
        for hook in hooks:
            hook.remove()
        gl.undo(Attention.forward)
    assert Attention.forward.__code__ is original


def test_timm_default_fused_path_warns_with_the_fix_and_keeps_outputs(gl, tiny_vit):
    image = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        expected = tiny_vit(image)
    gl("attn")(Attention.forward)
    try:
        gl.activate()
        with pytest.warns(CaptureWarning, match=r"fused attention.*fused_attn = False"):
            with torch.no_grad():
                out = tiny_vit(image)
        torch.testing.assert_close(out, expected, rtol=0, atol=0)
        assert gl.cache["Attention.forward"] == []
        assert gl.misses(Attention.forward) == 2
    finally:
        gl.undo(Attention.forward)


def test_capture_does_not_change_outputs_or_gradients(gl, tiny_vit):
    for block in tiny_vit.blocks:
        block.attn.fused_attn = False
    image = torch.randn(2, 3, 32, 32, requires_grad=True)
    out = tiny_vit(image).sum()
    (expected_grad,) = torch.autograd.grad(out, image)
    gl("attn")(Attention.forward)
    try:
        gl.activate()
        captured_out = tiny_vit(image).sum()
        (grad,) = torch.autograd.grad(captured_out, image)
        torch.testing.assert_close(captured_out, out, rtol=0, atol=0)
        torch.testing.assert_close(grad, expected_grad, rtol=0, atol=0)
    finally:
        gl.undo(Attention.forward)


MODEL = """
import torch
from torch import nn
from visualizer import get_local


class SelfAttention(nn.Module):
    def __init__(self, dim=8, heads=2):
        super().__init__()
        self.heads, self.qkv = heads, nn.Linear(dim, 3 * dim)

    @get_local("attn_map")
    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(x).reshape(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        attn_map = (q @ k.transpose(-2, -1) / (d // self.heads) ** 0.5).softmax(-1)
        return (attn_map @ v).transpose(1, 2).reshape(b, t, d)
"""


def test_activation_after_importing_the_model_module(public_get_local, tmp_path, monkeypatch):
    """The most common report against the original: activating after import gave an empty cache."""
    (tmp_path / "late_model.py").write_text(textwrap.dedent(MODEL))
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("late_model")
    try:
        torch.manual_seed(0)
        layer = module.SelfAttention()
        x = torch.randn(1, 4, 8)
        public_get_local.activate()  # after the import and after the instance exists
        with torch.no_grad():
            layer(x)
            mha_out, mha_weights = reference_with_multihead_attention(layer, x)
        [recorded] = public_get_local.cache["SelfAttention.forward"]
        assert recorded.shape == (1, 2, 4, 4)
        np.testing.assert_allclose(recorded, mha_weights.numpy(), atol=1e-6)
    finally:
        sys.modules.pop("late_model", None)


def reference_with_multihead_attention(layer, x):
    """The same weights in torch's nn.MultiheadAttention, asked for per-head weights."""
    dim = x.shape[-1]
    mha = torch.nn.MultiheadAttention(dim, layer.heads, batch_first=True)
    mha.in_proj_weight.copy_(layer.qkv.weight)
    mha.in_proj_bias.copy_(layer.qkv.bias)
    return mha(x, x, x, need_weights=True, average_attn_weights=False)
