"""capture_attention on hand-written attention decorated with get_local, beside the user's own cache."""

import pytest
import torch
from torch import nn

from visualizer import capture_attention


def scores(q, k):
    weights = (q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5).softmax(-1)
    return weights


class SelfAttention(nn.Module):
    """The original tool's use case: the map is a local of forward."""

    def __init__(self, dim=8, heads=2):
        super().__init__()
        self.heads, self.qkv = heads, nn.Linear(dim, 3 * dim)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(x).reshape(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        attn_map = (q @ k.transpose(-2, -1) / (d // self.heads) ** 0.5).softmax(-1)
        return (attn_map @ v).transpose(1, 2).reshape(b, t, d)


class TwoPass(nn.Module):
    """Calls a decorated global helper twice per forward."""

    def forward(self, x):
        return scores(x, x) @ scores(x, x) @ x


def reference(layer, x):
    """The same weights in torch's nn.MultiheadAttention, asked for per-head weights."""
    mha = nn.MultiheadAttention(x.shape[-1], layer.heads, batch_first=True)
    with torch.no_grad():
        mha.in_proj_weight.copy_(layer.qkv.weight)
        mha.in_proj_bias.copy_(layer.qkv.bias)
        return mha(x, x, x, need_weights=True, average_attn_weights=False)[1]


def test_a_decorated_forward_is_recorded_per_module_without_activating_get_local(public_get_local):
    public_get_local("attn_map")(SelfAttention.forward)
    original = SelfAttention.forward.__code__
    torch.manual_seed(0)
    model = nn.Sequential(SelfAttention(), SelfAttention())
    x = torch.randn(2, 4, 8)
    with torch.no_grad(), capture_attention(model) as maps:
        hidden = model[0](x)
        model[1](hidden)
    assert maps.names == ["0", "1"]
    torch.testing.assert_close(maps["0"], reference(model[0], x), atol=1e-6, rtol=0)
    torch.testing.assert_close(maps["1"], reference(model[1], hidden), atol=1e-6, rtol=0)
    assert public_get_local.cache == {} and not public_get_local.is_activate
    assert SelfAttention.forward.__code__ is original  # still inactive for the user


def test_the_users_active_capture_keeps_its_own_records(public_get_local):
    public_get_local("attn_map")(SelfAttention.forward)
    public_get_local.activate()
    model = nn.Sequential(SelfAttention(), SelfAttention())
    with torch.no_grad(), capture_attention(model, layers=1) as maps:
        model(torch.randn(1, 3, 8))
    assert len(public_get_local.cache["SelfAttention.forward"]) == 2 and len(maps) == 1
    torch.testing.assert_close(torch.from_numpy(public_get_local.cache["SelfAttention.forward"][1]), maps[0])
    assert maps.at(1) is maps[0] and maps.info(0).index == 1 and maps.info(0).path == "1"


def test_a_decorated_global_helper_belongs_to_the_module_that_calls_it(public_get_local):
    public_get_local("weights")(scores)
    model = nn.Sequential(nn.Linear(4, 4), TwoPass())
    x = torch.randn(1, 3, 4)
    with torch.no_grad(), capture_attention(model) as maps:
        model(x)
    assert maps.names == ["1"]
    first, second = maps.calls("1")
    assert first.shape == (1, 1, 3, 3)  # a 3-D map is taken as (heads, queries, keys) of one sequence
    with pytest.raises(ValueError, match=r"ran 2 times.*maps\['1', -1\]"):
        maps["1"]


def test_a_decorated_function_no_module_calls_by_name_is_recorded_under_its_key(public_get_local):
    public_get_local("weights")(scores)
    helpers = {"attend": scores}

    class Indirect(nn.Module):
        def forward(self, x):
            return helpers["attend"](x[0], x[0]) @ x[0]

    model = Indirect()
    with torch.no_grad(), capture_attention(model) as maps:
        model(torch.randn(1, 2, 3, 5))
    assert maps.names == ["scores"] and maps["scores"].shape == (1, 2, 3, 3)


def test_the_model_itself_may_be_the_decorated_module(public_get_local):
    public_get_local("attn_map")(SelfAttention.forward)
    layer = SelfAttention()
    x = torch.randn(1, 3, 8)
    with torch.no_grad(), capture_attention(layer) as maps:
        layer(x)
    assert maps.names == [""]
    torch.testing.assert_close(maps[0], reference(layer, x), atol=1e-6, rtol=0)


def test_decorated_functions_the_model_never_calls_are_not_layers(public_get_local):
    public_get_local("weights")(scores)  # decorated elsewhere, unrelated to this model
    torch.manual_seed(0)
    model = nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, 16, batch_first=True), 2).eval()
    with torch.no_grad(), capture_attention(model) as maps:
        model(torch.randn(1, 4, 8))
    assert len(maps) == 2 and maps[-1] is maps["layers.1.self_attn"]
    assert [info.path for info in maps.selected] == ["layers.0.self_attn", "layers.1.self_attn", "scores"]
    assert [info.calls for info in maps.selected] == [1, 1, 0] and not maps.selected[2].module


def test_a_users_capture_of_multihead_attention_does_not_get_in_the_way(public_get_local):
    public_get_local("attn_output")(nn.MultiheadAttention.forward)  # captured, then left inactive
    mha = nn.MultiheadAttention(8, 2, batch_first=True).eval()
    x = torch.randn(1, 3, 8)
    with torch.no_grad():
        _, expected = mha(x, x, x, average_attn_weights=False)
        with capture_attention(mha) as maps:
            mha(x, x, x)
    torch.testing.assert_close(maps[0], expected, atol=1e-6, rtol=0)
