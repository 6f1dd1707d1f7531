"""The patch grid and prefix tokens a capture declares per call, against each model's own, and the plots,
analysis, views and survey that read them: the same result with no geometry argument as with the right one."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from view.view_data import config_of

from visualizer import capture_attention
from visualizer._structure import Tokens

timm = pytest.importorskip("timm")
transformers = pytest.importorskip("transformers")

TIMM_SMALL = dict(pretrained=False, embed_dim=32, depth=2, num_heads=2, num_classes=0)


def timm_own(model, size):
    """(prefix, grid) as the timm model itself says for an input of ``size`` = (H, W)."""
    embed = model.patch_embed
    grid = embed.dynamic_feat_size(size) if getattr(model, "dynamic_img_size", False) else embed.grid_size
    return model.num_prefix_tokens, tuple(int(n) for n in grid)


TIMM_CASES = {
    "class token": ("vit_tiny_patch16_224", dict(img_size=64), [(64, 64)]),
    "no class token": (
        "vit_tiny_patch16_224",
        dict(img_size=64, class_token=False, global_pool="avg"),
        [(64, 64)],
    ),
    "4 registers": ("vit_small_patch14_reg4_dinov2", dict(img_size=56), [(56, 56)]),
    "distillation token": ("deit_tiny_distilled_patch16_224", dict(img_size=64), [(64, 64)]),
    "dynamic size, two sizes": (
        "vit_tiny_patch16_224",
        dict(img_size=224, dynamic_img_size=True),
        [(64, 96), (112, 48)],
    ),
    "dinov2": ("vit_small_patch14_dinov2", dict(img_size=70), [(70, 70)]),
    "eva02": ("eva02_tiny_patch14_224", dict(img_size=56), [(56, 56)]),
}


@pytest.mark.parametrize("case", TIMM_CASES, ids=list(TIMM_CASES))
def test_timm_declares_the_grid_and_prefix_of_each_call(case):
    name, kwargs, sizes = TIMM_CASES[case]
    torch.manual_seed(0)
    model = timm.create_model(name, **{**TIMM_SMALL, **kwargs}).eval()
    with torch.no_grad(), capture_attention(model) as maps:
        for size in sizes:
            model(torch.randn(1, 3, *size))
    for call, size in enumerate(sizes):
        prefix, grid = timm_own(model, size)
        for layer in range(len(maps)):
            layout = maps.layout(layer, call)
            assert layout == Tokens(prefix=prefix, grid=grid), (case, layer, call)
            assert layout.keys == maps.calls(layer)[call].shape[-1]


def hf_models():
    """(name, model, pixel size, own prefix, kwargs of the call) for transformers' vision models."""
    small = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37)
    t = transformers
    interpolate = {"interpolate_pos_encoding": True}
    return [
        ("ViT", t.ViTModel(t.ViTConfig(**small, image_size=32, patch_size=8)), 1, interpolate),
        ("DeiT", t.DeiTModel(t.DeiTConfig(**small, image_size=32, patch_size=8)), 2, interpolate),
        ("Dinov2", t.Dinov2Model(t.Dinov2Config(**small, image_size=32, patch_size=8)), 1, {}),
        (
            "Dinov2 with registers",
            t.Dinov2WithRegistersModel(
                t.Dinov2WithRegistersConfig(**small, image_size=32, patch_size=8, num_register_tokens=4)
            ),
            5,
            {},
        ),
        (
            "CLIP vision",
            t.CLIPVisionModel(t.CLIPVisionConfig(**small, image_size=32, patch_size=8)),
            1,
            interpolate,
        ),
        (
            "SigLIP vision",
            t.SiglipVisionModel(t.SiglipVisionConfig(**small, image_size=32, patch_size=8)),
            0,
            {},
        ),
    ]


@pytest.mark.parametrize("size", [(32, 32), (32, 48)], ids=["configured", "other size"])
def test_transformers_vision_models_declare_the_grid_and_prefix_of_each_call(size):
    done = []
    for name, model, prefix, kwargs in hf_models():
        if name == "SigLIP vision" and size != (32, 32):
            continue  # its position embeddings are fixed to the configured size
        model.eval()
        with torch.no_grad(), capture_attention(model) as maps:
            model(pixel_values=torch.randn(1, 3, *size), **kwargs)
        grid = (size[0] // 8, size[1] // 8)
        for layer, info in enumerate(maps.infos):
            if info.kind == "cross":  # SigLIP's pooling head: one latent query over the patches alone
                assert maps.layout(layer) == Tokens(prefix=0, grid=grid), name
                continue
            assert maps.layout(layer) == Tokens(prefix=prefix, grid=grid), (name, info.path)
        done.append(name)
    print(f"\ntransformers vision models at {size}: {done}")
    assert len(done) >= 5


def test_a_text_tower_beside_a_vision_tower_gets_no_grid():
    """CLIPModel: the patch convolution serves its own tower (the vision model), not the text model."""
    t = transformers
    small = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37)
    config = t.CLIPConfig(
        text_config=t.CLIPTextConfig(
            **small, vocab_size=99, max_position_embeddings=64, bos_token_id=0, eos_token_id=1
        ).to_dict(),
        vision_config=t.CLIPVisionConfig(**small, image_size=32, patch_size=8).to_dict(),
        projection_dim=16,
    )
    model = t.CLIPModel(config).eval()
    with torch.no_grad(), capture_attention(model) as maps:
        model(input_ids=torch.randint(0, 99, (1, 17)), pixel_values=torch.randn(1, 3, 32, 32))
    layouts = {path: maps.layout(path) for path in maps.names}
    assert {layouts[p] for p in layouts if p.startswith("text_model")} == {Tokens()}  # 17 tokens = 1 + 16 too
    assert {layouts[p] for p in layouts if p.startswith("vision_model")} == {Tokens(prefix=1, grid=(4, 4))}


def test_a_hand_written_vit_with_a_patch_convolution_gets_its_grid():
    """Any patchifying nn.Conv2d serves: nn.TransformerEncoder over conv patches and a class token."""

    class TinyViT(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.patches = torch.nn.Conv2d(3, 16, 4, stride=4)
            self.cls = torch.nn.Parameter(torch.zeros(1, 1, 16))
            layer = torch.nn.TransformerEncoderLayer(16, 2, 32, batch_first=True, dropout=0.0)
            self.encoder = torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)

        def forward(self, x):
            tokens = self.patches(x).flatten(2).transpose(1, 2)
            return self.encoder(torch.cat([self.cls.expand(len(x), -1, -1), tokens], 1))

    model = TinyViT().eval()
    with torch.no_grad(), capture_attention(model) as maps:
        model(torch.randn(2, 3, 12, 20))
    assert {maps.layout(i) for i in range(len(maps))} == {Tokens(prefix=1, grid=(3, 5))}


def test_tokens_layout_checks_its_fields():
    assert Tokens() == Tokens(prefix=0, grid=None) and Tokens().keys is None
    assert Tokens(prefix=5, grid=[16, 16]).grid == (16, 16) and Tokens(prefix=5, grid=(16, 16)).keys == 261
    for bad in [
        dict(prefix=-1, grid=(2, 2)),
        dict(prefix=True, grid=(2, 2)),
        dict(grid=(0, 2)),
        dict(grid=(2,)),
        dict(prefix=1),
    ]:
        with pytest.raises(ValueError, match="Tokens"):
            Tokens(**bad)


# -- what reads the geometry: no argument needed -------------------------------------------------------


@pytest.fixture(scope="module", params=["timm", "transformers"])
def registers(request):
    """A ViT with a class token and 4 registers on a 4 x 6 grid (not square), captured on 2 images: timm's
    (fused attention, rebuilt maps) or transformers' Dinov2WithRegistersModel (sdpa)."""
    torch.manual_seed(0)
    pixels = torch.rand(2, 3, 32, 48, generator=torch.Generator().manual_seed(1))
    if request.param == "timm":
        model = timm.create_model(
            "vit_small_patch14_reg4_dinov2", **{**TIMM_SMALL, "img_size": (32, 48), "patch_size": 8}
        ).eval()
    else:
        config = transformers.Dinov2WithRegistersConfig(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=37,
            image_size=32,
            patch_size=8,
            num_register_tokens=4,
        )
        model = transformers.Dinov2WithRegistersModel(config).eval()
    with torch.no_grad(), capture_attention(model) as maps:
        model(pixels)
    assert maps.layout(0) == Tokens(prefix=5, grid=(4, 6))
    return maps


@pytest.fixture(scope="module")
def picture():
    return np.random.default_rng(0).integers(0, 256, (32, 48, 3), dtype=np.uint8)


def drawn(fig) -> list:
    out = []
    for ax in fig.axes:
        out += [np.asarray(image.get_array(), dtype=float) for image in ax.get_images()]
        out += [np.asarray(dots.get_offsets(), dtype=float) for dots in ax.collections]
        out += [ax.get_title()]
    return out


def same(a, b) -> None:
    a, b = drawn(a), drawn(b)
    assert len(a) == len(b) > 0
    for x, y in zip(a, b, strict=True):
        if isinstance(x, str):
            assert x == y
        else:
            np.testing.assert_allclose(x, y)


def test_image_plots_need_no_geometry_argument(registers, picture):
    """Before the layout carried it, this capture's 29 tokens were refused as not 1 + a square."""
    import matplotlib.pyplot as plt

    from visualizer.plots import plot_attention_distance, plot_cls_attention, plot_grid_to_grid, plot_rollout

    explicit = dict(grid=(4, 6), prefix_tokens=5)
    pairs = [
        (plot_cls_attention(picture, registers), plot_cls_attention(picture, registers, **explicit)),
        (plot_rollout(picture, registers), plot_rollout(picture, registers, **explicit)),
        (
            plot_grid_to_grid(picture, registers, layer=1, query=(2, 3)),
            plot_grid_to_grid(picture, registers[1], query=(2, 3), **explicit),
        ),
        (
            plot_attention_distance(registers, patch_size=8),
            plot_attention_distance(registers, patch_size=8, **explicit),
        ),
    ]
    for declared, given in pairs:
        same(declared, given)
    # A plain map declares nothing: the old defaults (1 prefix token, a square grid) and their error.
    with pytest.raises(ValueError, match="29 tokens minus 1 prefix token"):
        plot_grid_to_grid(picture, registers[1])
    # An explicit argument overrides the declared one alone (and the declared grid then no longer fits).
    with pytest.raises(ValueError, match="29 tokens minus 1 prefix token.s. leave 28 patches"):
        plot_cls_attention(picture, registers, prefix_tokens=1)
    with pytest.raises(ValueError, match="grid 2 x 12 has 24 patches but the maps have 29 tokens = 1 prefix"):
        plot_cls_attention(picture, registers, prefix_tokens=1, grid=(2, 12))
    with pytest.raises(TypeError, match="attn holds 2 layers; name one: layer=i"):
        plot_grid_to_grid(picture, registers)
    with pytest.raises(
        IndexError, match=r"layer 1 is out of range: the maps hold 1 \(0..0\)"
    ):  # one layer's map
        plot_grid_to_grid(picture, registers[0], layer=1)
    plt.close("all")


def page(view) -> str:
    """A view's HTML without the random id each view gets."""
    return re.sub(r"tvz-[0-9a-f]{16}", "tvz-id", view.html)


def test_analysis_and_views_need_no_geometry_argument(registers, picture):
    from visualizer.analysis import mean_attention_distance
    from visualizer.view import image_view, model_view

    for layer in range(len(registers)):
        np.testing.assert_allclose(
            mean_attention_distance(registers, layer=layer),
            mean_attention_distance(registers[layer], (4, 6), cls_token=5),
        )
    np.testing.assert_allclose(
        mean_attention_distance(registers), mean_attention_distance(registers, grid=(4, 6), cls_token=5)
    )
    declared = page(image_view(registers, picture, batch=1))
    assert declared == page(image_view(registers, picture, batch=1, grid=(4, 6), prefix_tokens=5))
    config = config_of(declared)
    assert config["grid"] == [4, 6] and config["prefix"] == ["CLS", "reg1", "reg2", "reg3", "reg4"]
    assert page(model_view(registers, image=picture)) == page(
        model_view(registers, image=picture, grid=(4, 6), prefix_tokens=5)
    )


def test_the_survey_reads_the_declared_geometry():
    from visualizer import survey

    torch.manual_seed(0)
    model = timm.create_model(
        "vit_small_patch14_reg4_dinov2", **{**TIMM_SMALL, "img_size": (32, 48), "patch_size": 8}
    ).eval()
    images = [np.random.default_rng(i).integers(0, 256, (40, 60, 3), dtype=np.uint8) for i in range(3)]

    def transform(image):  # a PIL image: the centre 32 x 48, as a (3, 32, 48) tensor
        return torch.from_numpy(np.asarray(image)[4:36, 6:54].copy()).permute(2, 0, 1).float() / 255

    declared = survey(model, images, batch_size=2, transform=transform)
    given = survey(
        model, images, batch_size=2, transform=transform, grid=(4, 6), prefix_tokens=5, patch_size=8
    )
    for measure in ("distance", "entropy", "sink"):
        np.testing.assert_allclose(declared.mean(measure), given.mean(measure))
    np.testing.assert_allclose(declared.cls_map(), given.cls_map())
    assert declared.cls_map().shape == (2, 2, 4, 6)  # (layers, heads, rows, cols)
