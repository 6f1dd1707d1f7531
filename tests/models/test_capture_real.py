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
        reference = transformers_model(pixel_values=chelsea_pixels, output_attentions=True).attentions
    assert len(maps) == len(reference) == 12
    assert maps.stack().shape == (12, 1, 6, 257, 257)
    for layer, (captured, expected) in enumerate(zip(maps, reference)):
        assert (captured - expected).abs().max() <= 1e-5, layer
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
    for captured, expected in zip(maps, reference):
        assert (captured - expected).abs().max() <= 1e-6
    padded = batch["attention_mask"][1] == 0
    assert maps[5][1][:, :, padded].abs().max() == 0  # no attention on padding
    real = batch["attention_mask"].bool()
    # sdpa (off) and eager (on) agree on every real token; at padding positions, whose hidden
    # states nothing uses, the two kernels round differently (about 2e-5 on values up to 6).
    assert (captured_out - plain)[real].abs().max() <= 1e-5
    assert (captured_out - plain).abs().max() <= 1e-4
    assert model.config._attn_implementation == "sdpa"
