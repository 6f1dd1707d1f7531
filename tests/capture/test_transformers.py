"""capture_attention on transformers models under their default sdpa attention, checked against eager."""

import copy

import pytest
import torch

from visualizer import CaptureError, capture_attention


def eager_twin(model):
    """The same weights loaded with eager attention, for output_attentions."""
    twin = type(model)(copy.deepcopy(model.config)).eval()
    twin.load_state_dict(model.state_dict())
    twin.set_attn_implementation("eager")
    return twin


@pytest.fixture
def padded_batch():
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 100, (3, 9), generator=generator)
    mask = torch.ones(3, 9, dtype=torch.long)
    mask[1, 5:] = 0
    mask[2, 2:] = 0
    return ids, mask


def test_bert_maps_equal_eager_output_attentions_with_padding(tiny_bert, padded_batch):
    ids, mask = padded_batch
    assert tiny_bert.config._attn_implementation == "sdpa"
    with torch.no_grad():
        expected_out = tiny_bert(ids, attention_mask=mask).last_hidden_state
        with capture_attention(tiny_bert) as maps:
            out = tiny_bert(ids, attention_mask=mask).last_hidden_state
        reference = eager_twin(tiny_bert)(ids, attention_mask=mask, output_attentions=True).attentions
    assert maps.names == ["encoder.layer.0.attention.self", "encoder.layer.1.attention.self"]
    assert len(reference) == len(maps) == 2
    for captured, expected in zip(maps, reference):
        assert captured.shape == (3, 4, 9, 9)
        torch.testing.assert_close(captured, expected, atol=1e-6, rtol=0)
    # padded keys get no attention; every row sums to 1
    assert maps[0][1, :, :, 5:].abs().max() == 0 and maps[1][2, :, :, 2:].abs().max() == 0
    torch.testing.assert_close(maps[1].sum(-1), torch.ones(3, 4, 9), atol=1e-6, rtol=0)
    torch.testing.assert_close(out, expected_out, atol=1e-5, rtol=0)
    assert tiny_bert.config._attn_implementation == "sdpa"  # back on its own implementation


def test_a_model_loaded_eager_stays_eager_and_output_attentions_still_works(tiny_bert, padded_batch):
    ids, mask = padded_batch
    tiny_bert.set_attn_implementation("eager")
    with torch.no_grad(), capture_attention(tiny_bert) as maps:
        output = tiny_bert(ids, attention_mask=mask, output_attentions=True)
    assert tiny_bert.config._attn_implementation == "eager"
    for captured, returned in zip(maps, output.attentions):
        torch.testing.assert_close(captured, returned, atol=0, rtol=0)


@pytest.mark.parametrize("family", ["vit", "dinov2"])
def test_vision_models_match_eager_output_attentions(family):
    from transformers import Dinov2Config, Dinov2Model, ViTConfig, ViTModel

    torch.manual_seed(0)
    common = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, image_size=32, patch_size=8)
    if family == "vit":
        model = ViTModel(ViTConfig(intermediate_size=64, **common)).eval()
    else:
        model = Dinov2Model(Dinov2Config(mlp_ratio=2, **common)).eval()
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad(), capture_attention(model) as maps:
        model(pixels)
    with torch.no_grad():
        reference = eager_twin(model)(pixels, output_attentions=True).attentions
    assert len(maps) == 2 and maps[0].shape == (2, 4, 17, 17)
    for captured, expected in zip(maps, reference):
        torch.testing.assert_close(captured, expected, atol=1e-6, rtol=0)
    assert model.config._attn_implementation == "sdpa"
    assert set(maps.structured()) == {"layers"}  # one stack: role None, as its `attentions` field says


def test_a_model_that_cannot_switch_to_eager_raises_with_the_fix(tiny_bert, padded_batch, monkeypatch):
    """Eager capture (lazy=False) switches the model to eager; rebuilt capture needs no switch."""
    ids, mask = padded_batch
    monkeypatch.setattr(type(tiny_bert), "set_attn_implementation", lambda self, implementation: None)
    with torch.no_grad(), capture_attention(tiny_bert) as maps:
        tiny_bert(ids, attention_mask=mask)
    assert len(maps) == 2 and all(info.rebuilt for info in maps.infos)
    with pytest.raises(CaptureError, match=r"nothing was captured.*'sdpa'.*attn_implementation='eager'"):
        with torch.no_grad(), capture_attention(tiny_bert, lazy=False):
            tiny_bert(ids, attention_mask=mask)
