"""Plots of AttentionMaps: structure and captions as declared; layouts they cannot draw refused."""

import numpy as np
import pytest
import torch
from analysis.declared_maps import (
    build,
    captured_seq2seq,
    captured_swin,
    captured_vit,
    captured_xcit,
    info,
    softmax,
)
from plot_checks import check_figure, panels, titles

from visualizer import LayoutError, capture_attention
from visualizer.analysis import mean_attention_distance
from visualizer.plots import (
    plot_attention_distance,
    plot_attention_flow,
    plot_cls_attention,
    plot_grid_to_grid,
    plot_head,
    plot_layers,
    plot_rollout,
)
from visualizer.plots._inputs import color_norm


@pytest.fixture(scope="module")
def swin():
    return captured_swin()


@pytest.fixture(scope="module")
def vit():
    """A tiny random timm ViT (CLS + 4 x 4 patches) on 2 images, layers 1 and 2 of 3 captured."""
    pytest.importorskip("timm")
    maps = captured_vit(layers=[1, 2])
    return maps


@pytest.fixture
def picture():
    return np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)


def _mean_heads(t, batch=0):
    return t[batch].mean(0).numpy()


# -- plot_attention_flow ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["bart", "t5"])
def test_flow_of_a_captured_encoder_decoder_against_eager_attentions(kind):
    _, maps, (ids, decoder_ids), out = captured_seq2seq(kind)
    src, tgt = [f"s{i}" for i in range(ids.shape[1])], [f"t{i}" for i in range(decoder_ids.shape[1])]
    fig = plot_attention_flow(maps, source_tokens=src, target_tokens=tgt)
    check_figure(fig, 6, n_colorbars=6)
    shown = panels(fig)
    for layer in range(2):
        enc, dec, cross = shown[3 * layer : 3 * layer + 3]
        np.testing.assert_allclose(
            enc.images[0].get_array(), _mean_heads(out.encoder_attentions[layer]), atol=1e-6
        )
        np.testing.assert_allclose(
            dec.images[0].get_array(), _mean_heads(out.decoder_attentions[layer]), atol=1e-6
        )
        np.testing.assert_allclose(
            cross.images[0].get_array(), _mean_heads(out.cross_attentions[layer]), atol=1e-6
        )
        assert all(
            t.endswith(f"layer {layer}") for t in (enc.get_title(), dec.get_title(), cross.get_title())
        )
    assert [t.get_text() for t in shown[2].get_xticklabels()] == src  # cross: keys are the source
    assert [t.get_text() for t in shown[2].get_yticklabels()] == tgt
    # The structured() dict draws the same.
    again = plot_attention_flow(maps.structured(), layers=[-1])
    np.testing.assert_allclose(
        panels(again)[2].images[0].get_array(), _mean_heads(out.cross_attentions[1]), atol=1e-6
    )


def test_flow_of_a_single_stack_model_is_one_column():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32
    )
    model = transformers.BertModel(config).eval()
    ids = torch.randint(3, 50, (1, 5), generator=torch.Generator().manual_seed(0))
    with capture_attention(model) as maps, torch.no_grad():
        model(input_ids=ids)
    assert list(maps.structured()) == ["layers"]
    model.set_attn_implementation("eager")
    with torch.no_grad():
        eager = model(input_ids=ids, output_attentions=True).attentions
    tokens = list("abcde")
    fig = plot_attention_flow(maps, tokens=tokens)
    check_figure(fig, 2, n_colorbars=2)
    first, second = panels(fig)
    assert first.get_title().startswith("self-attention\ntoken → token")  # no arrow in from a stack
    assert [t.get_text() for t in first.get_xticklabels()] == tokens
    for ax, reference in zip((first, second), eager):
        np.testing.assert_allclose(ax.images[0].get_array(), _mean_heads(reference), atol=1e-6)


def test_flow_of_an_nn_transformer_encoder_has_the_encoder_column():
    layer = torch.nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.0, batch_first=True)
    model = torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=False).eval()
    with capture_attention(model) as maps, torch.no_grad():
        model(torch.rand(1, 4, 8))
    assert {i.role for i in maps.infos} == {"encoder"}
    fig = plot_attention_flow(maps)
    check_figure(fig, 2)
    assert titles(fig)[0].startswith("encoder self-attention")


def test_flow_picks_a_call_of_layers_that_ran_several_times():
    enc, first, last, cross = (
        softmax(1, 2, 3, 3),
        softmax(1, 2, 1, 1, seed=1),
        softmax(1, 2, 1, 1, seed=2),
        None,
    )
    cross = [softmax(1, 2, 1, 3, seed=3), softmax(1, 2, 1, 3, seed=4)]
    maps = build(
        [
            (info("enc.0.attn", 0, role="encoder", block="enc.0", depth=0), [enc, enc]),
            (info("dec.0.self", 1, role="decoder", block="dec.0", depth=0), [first, last]),
            (info("dec.0.cross", 2, role="decoder", kind="cross", block="dec.0", depth=0), cross),
        ]
    )
    with pytest.raises(ValueError, match=r"ran 2 times.*structured\(call=i\)"):
        plot_attention_flow(maps)
    fig = plot_attention_flow(maps, call=-1)
    np.testing.assert_allclose(panels(fig)[2].images[0].get_array(), _mean_heads(cross[1]))


def test_flow_refuses_windowed_and_channel_maps(swin):
    _, windows, _ = swin
    with pytest.raises(LayoutError, match=r"plot_attention_flow\(\): layer 0 .* has layout windows"):
        plot_attention_flow(windows)
    _, channels, _ = captured_xcit()
    with pytest.raises(LayoutError, match="channels"):
        plot_attention_flow(channels)


# -- captions and x positions from the declaration ---------------------------------------------------


def test_layer_panels_and_distance_read_the_declared_depth(vit, picture):
    assert [i.depth for i in vit.infos] == [1, 2]  # positions 0 and 1 among the captured
    fig = plot_layers(vit)
    assert titles(fig) == ["layer 1", "layer 2"]
    fig = plot_cls_attention(picture, vit, grid=(4, 4), show_image=False)
    assert [t.split("\n")[0] for t in titles(fig)] == ["layer 1", "layer 2"]
    fig = plot_attention_distance(vit, grid=(4, 4))
    dots = panels(fig)[0].collections
    expected = mean_attention_distance(vit, (4, 4)).mean(1)  # (layers, heads), the batch mean
    for head, dot in enumerate(dots):
        np.testing.assert_allclose(dot.get_offsets(), np.c_[[1, 2], expected[:, head]])


def test_layer_panels_say_role_and_kind():
    _, maps, _, _ = captured_seq2seq("bart")
    fig = plot_layers(maps, layers=[2, 4])  # the decoder's self-attention: 4 x 4 each
    assert titles(fig) == ["decoder layer 0", "decoder layer 1"]
    fig = plot_layers(maps, layers=[3, 5])
    assert titles(fig) == ["decoder layer 0, cross", "decoder layer 1, cross"]


# -- windows and channels ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda maps, img: plot_layers(maps),
        lambda maps, img: plot_cls_attention(img, maps, prefix_tokens=0),
        lambda maps, img: plot_rollout(img, maps, prefix_tokens=0),
        lambda maps, img: plot_attention_distance(maps, prefix_tokens=0),
    ],
    ids=["layers", "cls", "rollout", "distance"],
)
def test_token_plots_refuse_windowed_maps_and_name_the_fix(swin, picture, call):
    _, maps, _ = swin
    with pytest.raises(
        LayoutError, match=r"'layers.0.blocks.0.attn'\) has layout windows \(7x7 tokens.*scatter"
    ):
        call(maps, picture)


def test_a_selection_of_token_layers_of_xcit_is_drawn_and_its_channel_layers_refused():
    _, maps, _ = captured_xcit()
    with pytest.raises(LayoutError, match=r"layer 0 \('blocks.0.attn'\) has layout channels"):
        plot_layers(maps)
    fig = plot_layers(maps, layers=[2, 3], head=0)  # the class-attention blocks: CLS -> tokens
    check_figure(fig, 2)
    np.testing.assert_allclose(panels(fig)[0].images[0].get_array(), maps[2][0, 0].numpy())


def _scatter_unshifted(raw, rows, cols, window):
    """Not maps.scatter: token i of window (r, c) is grid token (r * w + i // w, c * w + i % w)."""
    per_image = (rows // window) * (cols // window)
    batch, heads = raw.shape[0] // per_image, raw.shape[1]
    out = np.zeros((batch, heads, rows * cols, rows * cols))
    i = np.arange(window * window)
    for w in range(per_image):
        r, c = divmod(w, cols // window)
        tokens = (r * window + i // window) * cols + c * window + i % window
        out[:, :, tokens[:, None], tokens[None, :]] = raw.reshape(batch, per_image, heads, len(i), len(i))[
            :, w
        ]
    return out


def test_one_windowed_layer_scattered_is_drawn_as_a_token_map(swin):
    _, maps, _ = swin
    layout = maps.layout(0)
    scattered = maps.scatter(0)
    expected = _scatter_unshifted(maps[0].numpy(), 14, 14, 7)
    fig = plot_head(scattered, head=0, batch=1)
    np.testing.assert_allclose(panels(fig)[0].images[0].get_array(), expected[1, 0], atol=1e-7)
    image = np.zeros((56, 56, 3), np.uint8)
    fig = plot_grid_to_grid(image, scattered, query=(3, 10), grid=layout.size, prefix_tokens=0)
    check_figure(fig, 2, n_colorbars=1, images_per_panel=1)
    query = 3 * 14 + 10
    np.testing.assert_allclose(
        panels(fig)[1].images[1].get_array(), expected[0, 0, query].reshape(14, 14), atol=1e-7
    )


def test_one_map_plots_ask_for_one_layer(vit):
    with pytest.raises(TypeError, match=r"attn holds 2 layers; name one: layer=i.*maps\[i\]"):
        plot_head(vit)


# -- one colour norm, scale= on the image plots -------------------------------------------------------------


@pytest.mark.parametrize("scale", ["linear", "sqrt", "log"])
def test_image_plots_take_scale_and_use_the_norm_of_the_matrix_plots(vit, picture, scale):
    grid = {"grid": (4, 4)}
    row = vit[1][0].mean(0)[5].numpy()  # token 5's row, head mean, image 0
    fig = plot_grid_to_grid(picture, vit[1], query=5, scale=scale, **grid)
    overlay = panels(fig)[1].images[1]
    reference = color_norm(scale, None, None, row[1:], "reference")
    assert type(overlay.norm) is type(reference)
    assert (overlay.norm.vmin, overlay.norm.vmax) == pytest.approx((reference.vmin, reference.vmax))
    matrix = plot_head(row[None, 1:], head=None, scale=scale).axes[0].images[0].norm
    assert (matrix.vmin, matrix.vmax) == pytest.approx((reference.vmin, reference.vmax))
    fig = plot_rollout(picture, vit, scale=scale, **grid)
    assert type(panels(fig)[1].images[1].norm) is type(reference)
    fig = plot_cls_attention(picture, vit, scale=scale, show_image=False, **grid)
    norm = panels(fig)[0].images[1].norm
    assert type(norm) is type(reference) and norm.vmax == pytest.approx(1.0)  # each panel over its maximum
    fixed = plot_cls_attention(picture, vit, scale=scale, vmin=0.01, vmax=0.2, show_image=False, **grid)
    assert (panels(fixed)[1].images[1].norm.vmin, panels(fixed)[1].images[1].norm.vmax) == (0.01, 0.2)


def test_image_plots_refuse_a_bad_scale_or_limits(vit, picture):
    with pytest.raises(ValueError, match="scale must be one of"):
        plot_rollout(picture, vit, grid=(4, 4), scale="cubic")
    with pytest.raises(ValueError, match="vmin .* must be below vmax"):
        plot_grid_to_grid(picture, vit[0], grid=(4, 4), vmin=0.3, vmax=0.1)
