"""Tiny random models for the capture tests, one per framework."""

import pytest
import tiny_models
import torch


@pytest.fixture
def tiny_vit():
    import timm

    torch.manual_seed(0)
    return timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, num_classes=0, img_size=32, depth=3
    ).eval()


@pytest.fixture
def tiny_bert():
    return tiny_models.tiny_bert()


@pytest.fixture
def tiny_transformer():
    torch.manual_seed(0)
    return torch.nn.Transformer(
        d_model=16, nhead=2, num_encoder_layers=2, num_decoder_layers=2, dim_feedforward=32, batch_first=True
    ).eval()
