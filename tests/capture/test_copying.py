"""Copying, pickling and saving a model during a capture: it works, and the copy is the model as it was."""

import copy
import io
import pickle

import pytest
import torch
from torch import nn

from visualizer import capture_attention, get_local


class SelfAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.qkv = nn.Linear(8, 24)

    def forward(self, x):
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        attn_map = (q @ k.transpose(-2, -1) / 8**0.5).softmax(-1)
        return attn_map @ v


def _models():
    import timm
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    return {
        "torch": (
            nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, 16, batch_first=True), 2).eval(),
            lambda: torch.randn(1, 4, 8),
        ),
        "timm": (
            timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, depth=2).eval(),
            lambda: torch.randn(1, 3, 32, 32),
        ),
        "transformers": (
            BertModel(
                BertConfig(
                    vocab_size=50,
                    hidden_size=16,
                    num_hidden_layers=2,
                    num_attention_heads=2,
                    intermediate_size=32,
                )
            ).eval(),
            lambda: torch.tensor([[1, 5, 7, 2]]),
        ),
        "get_local": (nn.Sequential(SelfAttention(), SelfAttention()), lambda: torch.randn(1, 4, 8)),
    }


def _state(model):
    """What a capture may change: hooks, timm's fused switch, transformers' implementation, code."""
    hooks = [
        (name, len(m._forward_hooks), len(m._forward_pre_hooks), getattr(m, "fused_attn", None))
        for name, m in model.named_modules()
    ]
    config = getattr(model, "config", None)
    instance = [
        name for name, m in model.named_modules() if "__deepcopy__" in vars(m) or "__reduce_ex__" in vars(m)
    ]
    return hooks, getattr(config, "_attn_implementation", None), instance


@pytest.mark.parametrize("framework", ["torch", "timm", "transformers", "get_local"])
def test_deepcopy_pickle_and_torch_save_during_a_capture(framework, public_get_local):
    model, make_input = _models()[framework]
    if framework == "get_local":
        public_get_local("attn_map")(SelfAttention.forward)
    original = SelfAttention.forward.__code__
    before = _state(model)
    x = make_input()
    with torch.no_grad():
        expected = model(x)
    with torch.no_grad(), capture_attention(model) as maps:
        twin = copy.deepcopy(model)
        pickled = pickle.loads(pickle.dumps(model))
        buffer = io.BytesIO()
        torch.save(model, buffer)
        part = copy.deepcopy(next(m for m in model.modules() if m is not model))  # a submodule alone
        model(x)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=False)
    assert len(maps) == 2  # the capture went on recording around the copies
    for copied in (twin, pickled, saved):
        assert _state(copied) == before  # no hooks, no switched settings, no copy hooks
        with torch.no_grad():
            out = copied(x)
        reference = expected[0] if isinstance(expected, tuple) or hasattr(expected, "keys") else expected
        result = out[0] if isinstance(out, tuple) or hasattr(out, "keys") else out
        torch.testing.assert_close(result, reference, atol=1e-5, rtol=0)
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in part.modules())
    assert _state(model) == before and SelfAttention.forward.__code__ is original
    assert get_local is public_get_local
