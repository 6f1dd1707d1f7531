"""capture_attention on timm ViTs, fused attention on or off, checked against a hand computation."""

import pytest
import references
import torch
from timm.layers import Attention

from visualizer import capture_attention, get_local


def block_inputs(model):
    """Each attention module's input on the next forward, via pre-hooks (removed by the caller)."""
    inputs = []
    hooks = [block.attn.register_forward_pre_hook(lambda m, a: inputs.append(a[0])) for block in model.blocks]
    return inputs, hooks


@pytest.mark.parametrize("fused", [True, False])
def test_maps_equal_a_hand_computation_whatever_the_kernel(tiny_vit, fused):
    for block in tiny_vit.blocks:
        block.attn.fused_attn = fused
    inputs, hooks = block_inputs(tiny_vit)
    original = Attention.forward.__code__
    image = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected_out = tiny_vit(image)
        inputs.clear()
        with capture_attention(tiny_vit) as maps:
            out = tiny_vit(image)
        for hook in hooks:
            hook.remove()
        expected = [references.timm_attention(block.attn, x) for block, x in zip(tiny_vit.blocks, inputs)]
    assert len(maps) == 3 and maps.names == ["blocks.0.attn", "blocks.1.attn", "blocks.2.attn"]
    for attention, reference in zip(maps, expected):
        assert attention.shape == (2, 3, 5, 5)
        torch.testing.assert_close(attention, reference, atol=1e-6, rtol=0)
        torch.testing.assert_close(attention.sum(-1), torch.ones(2, 3, 5), atol=1e-6, rtol=0)
    torch.testing.assert_close(out, expected_out, atol=1e-5, rtol=0)
    assert [block.attn.fused_attn for block in tiny_vit.blocks] == [fused] * 3  # back as it was
    assert Attention.forward.__code__ is original and get_local.capture_of(Attention.forward) is None


def test_everything_comes_back_after_an_exception_in_the_forward(tiny_vit):
    def fail(module, args):
        raise RuntimeError("boom")

    hook = tiny_vit.blocks[1].attn.qkv.register_forward_pre_hook(fail)  # raises inside Attention.forward
    with pytest.raises(RuntimeError, match="boom"):
        with capture_attention(tiny_vit) as maps:
            tiny_vit(torch.randn(1, 3, 32, 32))
    hook.remove()
    assert maps.names == ["blocks.0.attn"]
    assert all(block.attn.fused_attn for block in tiny_vit.blocks)
    assert get_local.capture_of(Attention.forward) is None
    assert not any(block.attn._forward_hooks or block.attn._forward_pre_hooks for block in tiny_vit.blocks)


def test_lookup_by_path_index_and_regex_selection(tiny_vit):
    with torch.no_grad(), capture_attention(tiny_vit, layers=r"blocks\.(0|2)\.attn") as maps:
        tiny_vit(torch.randn(1, 3, 32, 32))
    assert maps.names == ["blocks.0.attn", "blocks.2.attn"]
    assert maps.at(2) is maps["blocks.2.attn"] and maps[-1] is maps[1] is maps.at(2)
    with pytest.raises(
        KeyError, match=r"attention module 1 was not captured; selected layers: \[0\] blocks.0.attn"
    ):
        maps.at(1)
    assert maps.stack().shape == (2, 1, 3, 5, 5)
    # the unselected block ran on timm's fused path, untouched
    assert all(block.attn.fused_attn for block in tiny_vit.blocks)


def test_storage_options_and_gradients(tiny_vit):
    image = torch.randn(1, 3, 32, 32, requires_grad=True)
    with capture_attention(tiny_vit, layers=0, keep_grad=True) as maps:
        tiny_vit(image)
    (grad,) = torch.autograd.grad(maps[0][0, 0, 0, 1], image)
    assert grad.abs().sum() > 0
    with torch.no_grad(), capture_attention(tiny_vit, dtype=torch.float16, device="cpu") as maps:
        tiny_vit(image)
    assert maps[0].dtype == torch.float16 and maps[0].device.type == "cpu" and maps[0].grad_fn is None


def test_users_own_get_local_capture_keeps_recording_alongside(public_get_local, tiny_vit):
    public_get_local("attn", "q")(Attention.forward)
    public_get_local.activate()
    for block in tiny_vit.blocks:
        block.attn.fused_attn = False
    with torch.no_grad(), capture_attention(tiny_vit) as maps:
        tiny_vit(torch.randn(1, 3, 32, 32))
    records = public_get_local.cache["Attention.forward"]
    assert len(records) == 3 and len(maps) == 3
    for (attn, _q), captured in zip(records, maps):
        torch.testing.assert_close(torch.from_numpy(attn), captured)
    assert public_get_local.capture_of(Attention.forward) is not None  # still the user's capture
