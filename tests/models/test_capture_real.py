"""capture_attention on the two real-weight models, against independent implementations."""

import copy

import pytest
import torch

from visualizer import capture_attention
from visualizer.models import load_bert, load_vit, prepare_image, sample_images


@pytest.fixture(scope="module")
def chelsea_pixels():
    return prepare_image(sample_images("chelsea")["chelsea"])[0]


def test_timm_dinov2_capture_equals_transformers_dinov2_eager_output_attentions(dinov2_timm, chelsea_pixels):
    """Two implementations, the same weights: timm (fused by default) captured, transformers asked."""
    assert all(block.attn.fused_attn for block in dinov2_timm.blocks)  # timm's default kernel
    transformers_model = load_vit(library="transformers", attn_implementation="eager")
    with torch.no_grad():
        plain = dinov2_timm(chelsea_pixels)
        with capture_attention(dinov2_timm) as maps:
            captured_out = dinov2_timm(chelsea_pixels)
        with capture_attention(dinov2_timm, lazy=False) as eager_maps:
            dinov2_timm(chelsea_pixels)
        reference = transformers_model(pixel_values=chelsea_pixels, output_attentions=True).attentions
    assert len(maps) == len(eager_maps) == len(reference) == 12
    assert all(info.rebuilt for info in maps.infos) and not any(info.rebuilt for info in eager_maps.infos)
    assert maps.stack().shape == (12, 1, 6, 257, 257)
    for layer, (captured, expected) in enumerate(zip(eager_maps, reference)):  # the same computation
        assert (captured - expected).abs().max() <= 1e-5, layer
    # Rebuilt maps are exact for the activations the fused kernel produced; those differ from the
    # eager model's by float rounding, which a few peaked heads of these real weights amplify to
    # about 2e-5 by the fourth layer.
    for layer, (captured, expected) in enumerate(zip(maps, reference)):
        assert (captured - expected).abs().max() <= 1e-4, layer
        recipe = maps.recipe(layer)
        scores = recipe.query @ recipe.key.transpose(-2, -1) / recipe.query.shape[-1] ** 0.5
        assert (captured - scores.softmax(-1)).abs().max() <= 1e-5, layer  # from the kernel's own inputs
    torch.testing.assert_close(maps.stack().sum(-1), torch.ones(12, 1, 6, 257), atol=1e-5, rtol=0)
    assert (captured_out - plain).abs().max() <= 1e-5
    assert all(block.attn.fused_attn for block in dinov2_timm.blocks)  # back on the fused kernel


def test_minilm_capture_equals_eager_output_attentions_with_padding():
    model, tokenizer = load_bert()
    assert model.config._attn_implementation == "sdpa"  # transformers 5.x's default
    batch = tokenizer(
        ["The cat sat on the mat because it was tired.", "A short one."], padding=True, return_tensors="pt"
    )
    assert batch["attention_mask"][1].sum() < batch["attention_mask"][0].sum()  # the second is padded
    eager = type(model)(copy.deepcopy(model.config)).eval()
    eager.load_state_dict(model.state_dict())
    eager.set_attn_implementation("eager")
    with torch.no_grad():
        plain = model(**batch).last_hidden_state
        with capture_attention(model) as maps:
            captured_out = model(**batch).last_hidden_state
        reference = eager(**batch, output_attentions=True).attentions
    assert len(maps) == len(reference) == 6 and maps[0].shape[:2] == (2, 12)
    assert all(info.rebuilt for info in maps.infos)  # sdpa kept, maps rebuilt from its inputs
    for captured, expected in zip(maps, reference):
        assert (captured - expected).abs().max() <= 1e-5
    padded = batch["attention_mask"][1] == 0
    assert maps[5][1][:, :, padded].abs().max() == 0  # no attention on padding
    # The capture keeps the model on its sdpa kernel: the outputs are the same computation.
    assert torch.equal(captured_out, plain)
    assert model.config._attn_implementation == "sdpa"
