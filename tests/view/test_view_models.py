"""Views of maps captured from tiny random models: a timm ViT (get_local, capture_attention) and a BERT."""

import numpy as np
import pytest
from view_data import config_of, embedded

from visualizer.view import head_view, image_view
from visualizer.view._codec import decode_maps, max_error

torch = pytest.importorskip("torch")


def test_image_view_of_a_timm_vit_captured_with_get_local(public_get_local):
    timm = pytest.importorskip("timm")
    from timm.layers import Attention

    torch.manual_seed(0)
    model = timm.create_model(
        "vit_tiny_patch16_224",
        pretrained=False,
        img_size=48,
        patch_size=16,
        embed_dim=32,
        depth=2,
        num_heads=2,
    ).eval()
    for block in model.blocks:
        block.attn.fused_attn = False
    public_get_local("attn")(Attention.forward)
    public_get_local.configure(store="tensor")
    image = torch.rand(1, 3, 48, 48)
    with public_get_local.activated() as cache, torch.no_grad():
        model(image)
    maps = cache[public_get_local.key_of(Attention.forward)]
    assert len(maps) == 2 and maps[0].shape == (1, 2, 10, 10)  # CLS + 3x3 patches, as torch tensors

    view = image_view(maps, image[0].permute(1, 2, 0).numpy())
    config = config_of(view.html)
    assert config["grid"] == [3, 3] and config["layers"] == ["layer 0", "layer 1"]
    back = decode_maps(embedded(view.html, "tvz-data"), config["maps"])
    expected = torch.stack([m[0] for m in maps]).numpy()
    assert (np.abs(back - expected) <= max_error(expected, config["maps"])).all()


def test_head_view_of_a_bert_with_eager_attention():
    transformers = pytest.importorskip("transformers")

    config = transformers.BertConfig(
        vocab_size=50,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=32,
    )
    torch.manual_seed(0)
    model = transformers.BertModel._from_config(config, attn_implementation="eager").eval()
    ids = torch.tensor([[1, 7, 8, 9, 2], [1, 5, 6, 2, 0]])
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=(ids != 0).long(), output_attentions=True)
    assert len(out.attentions) == 2 and out.attentions[0].shape == (2, 4, 5, 5)

    tokens = ["[CLS]", "x", "y", "[SEP]", "[PAD]"]
    view = head_view(out.attentions, tokens, batch=1, include_heads=[0, 3])
    config_ = config_of(view.html)
    back = decode_maps(embedded(view.html, "tvz-data"), config_["maps"])
    expected = torch.stack([a[1, [0, 3]] for a in out.attentions]).numpy()
    assert (np.abs(back - expected) <= max_error(expected, config_["maps"])).all()
    assert (back[..., 4] == 0).all()  # the padding key gets no weight, and shows none


def test_attention_maps_from_capture_attention_label_the_layers():
    timm = pytest.importorskip("timm")
    capture = pytest.importorskip("visualizer._capture", reason="capture_attention is not in this checkout")

    torch.manual_seed(0)
    model = timm.create_model(
        "vit_tiny_patch16_224",
        pretrained=False,
        img_size=48,
        patch_size=16,
        embed_dim=32,
        depth=3,
        num_heads=2,
    ).eval()
    with capture.capture_attention(model) as maps, torch.no_grad():
        model(torch.rand(2, 3, 48, 48))
    view = image_view(maps, np.zeros((48, 48, 3), np.uint8), layers=[0, 2], batch=1)
    config = config_of(view.html)
    assert config["layers"] == ["blocks.0.attn", "blocks.2.attn"]
    back = decode_maps(embedded(view.html, "tvz-data"), config["maps"])
    expected = torch.stack([maps[0][1], maps[2][1]]).numpy()
    assert (np.abs(back - expected) <= max_error(expected, config["maps"])).all()


def test_real_dinov2_and_minilm_views_stay_small(public_get_local, tmp_path, monkeypatch):
    # The sizes quoted in visualizer/view/__init__.py, with the real weights: a ViT-S/14 view
    # of all 12 layers x 6 heads x 257 x 257 in a few MB, a 6-layer BERT on a sentence in kB.
    models = pytest.importorskip("visualizer.models", reason="visualizer.models is not in this checkout")
    pytest.importorskip("timm")
    from timm.layers import Attention

    monkeypatch.setenv("VISUALIZER_CACHE", str(tmp_path))  # keep converted weights out of the user's cache
    try:
        vit = models.load_vit()
        bert, tokenizer = models.load_bert()
    except models.WeightsError as error:
        pytest.skip(f"real weights are not installed: {error}")
    for block in vit.blocks:
        block.attn.fused_attn = False
    public_get_local("attn")(Attention.forward)
    x, shown = models.prepare_image(models.sample_images()["chelsea"])
    with public_get_local.activated() as cache, torch.no_grad():
        vit(x)
    maps = cache[public_get_local.key_of(Attention.forward)]
    view = image_view(maps, shown)
    assert config_of(view.html)["maps"]["shape"] == [12, 6, 257, 257]
    assert 1e6 < view.nbytes < 4.5e6
    assert image_view(maps, shown, layers=[-1]).nbytes < 0.8e6

    bert.set_attn_implementation("eager")
    encoded = tokenizer(
        "The quick brown fox jumps over the lazy dog while the cat sleeps in the warm sun.",
        return_tensors="pt",
    )
    with torch.no_grad():
        out = bert(**encoded, output_attentions=True)
    text = head_view(out.attentions, tokenizer.convert_ids_to_tokens(encoded["input_ids"][0]))
    assert config_of(text.html)["maps"]["shape"] == [6, 12, 20, 20]
    assert text.nbytes < 100e3
