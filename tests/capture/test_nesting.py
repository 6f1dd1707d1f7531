"""Nested and overlapping captures of one model, for every adapter: each gets every map, and
the model is left as it was whatever order they end in."""

import pytest
import torch
from torch import nn

from visualizer import capture_attention


class SelfAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.qkv = nn.Linear(8, 24)

    def forward(self, x):
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        attn_map = (q @ k.transpose(-2, -1) / 8**0.5).softmax(-1)
        return attn_map @ v


def _model(framework):
    torch.manual_seed(0)
    if framework == "torch":
        model = nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, 16, batch_first=True), 2)
        return model.eval(), torch.randn(1, 4, 8)
    if framework == "timm":
        import timm

        model = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, depth=2)
        return model.eval(), torch.randn(1, 3, 32, 32)
    if framework in ("transformers", "transformers-fallback"):
        from transformers import BertConfig, BertModel, DebertaV2Config, DebertaV2Model

        config, cls = (
            (BertConfig, BertModel) if framework == "transformers" else (DebertaV2Config, DebertaV2Model)
        )
        model = cls(
            config(
                vocab_size=50,
                hidden_size=16,
                num_hidden_layers=2,
                num_attention_heads=2,
                intermediate_size=32,
            )
        )
        return model.eval(), torch.tensor([[1, 5, 7, 2]])
    return nn.Sequential(SelfAttention(), SelfAttention()), torch.randn(1, 4, 8)


def _state(model):
    config = getattr(model, "config", None)
    return (
        [
            (len(m._forward_hooks), len(m._forward_pre_hooks), getattr(m, "fused_attn", None))
            for m in model.modules()
        ],
        getattr(config, "_attn_implementation", None),
    )


def _output(model, x):
    out = model(x)
    return out[0] if isinstance(out, tuple) else getattr(out, "last_hidden_state", out)


@pytest.mark.parametrize("framework", ["torch", "timm", "transformers", "transformers-fallback", "get_local"])
@pytest.mark.parametrize("order", ["nested", "overlapping"])
def test_every_capture_gets_every_map_and_the_model_comes_back(framework, order, public_get_local):
    if framework == "get_local":
        public_get_local("attn_map")(SelfAttention.forward)
    model, x = _model(framework)
    before = _state(model)
    with torch.no_grad():
        expected = _output(model, x)
        with capture_attention(model) as alone:
            model(x)
        first, second = capture_attention(model), capture_attention(model)
        a, b = first.start(), second.start()
        both = _output(model, x)
        (second if order == "nested" else first).stop()
        model(x)
        (first if order == "nested" else second).stop()
    torch.testing.assert_close(both, expected, atol=1e-5, rtol=0)  # the caller's output is unchanged
    outer, inner = (a, b) if order == "nested" else (b, a)  # the one still open for the second call
    assert len(outer) == len(alone) == 2
    for position in range(2):
        assert len(outer.calls(position)) == 2 and len(inner.calls(position)) == 1
        for calls in (outer.calls(position), inner.calls(position)):
            torch.testing.assert_close(calls[0], alone[position], atol=1e-6, rtol=0)
    assert _state(model) == before
