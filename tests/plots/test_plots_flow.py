"""plot_attention_flow and plot_attention_distance; matplotlib stays unimported until a plot is drawn."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from plot_checks import check_figure, panels, softmax_maps, titles

from visualizer.analysis import mean_attention_distance
from visualizer.plots import plot_attention_distance, plot_attention_flow


def encoder_decoder(rng, enc_layers=2, dec_layers=2, src=5, tgt=4):
    return {
        "encoder": [
            {"self_attention": torch.from_numpy(softmax_maps(rng, 1, 2, src, src))} for _ in range(enc_layers)
        ],
        "decoder": [
            {
                "self_attention": softmax_maps(rng, 1, 2, tgt, tgt),
                "cross_attention": softmax_maps(rng, 1, 2, tgt, src),
            }
            for _ in range(dec_layers)
        ],
    }


class Structured:
    def __init__(self, layout):
        self.layout = layout

    def structured(self):
        return self.layout


def test_flow_has_encoder_self_decoder_self_and_cross_per_layer_with_token_labels():
    layout = encoder_decoder(np.random.default_rng(0))
    src, tgt = list("abcde"), ["<s>", "a", "b", "c"]
    fig = plot_attention_flow(Structured(layout), source_tokens=src, target_tokens=tgt)
    check_figure(fig, 6, n_colorbars=6)
    enc, dec, cross = panels(fig)[:3]
    assert "encoder self" in enc.get_title() and "decoder self" in dec.get_title()
    assert "cross" in cross.get_title()
    assert [t.get_text() for t in enc.get_xticklabels()] == src
    assert [t.get_text() for t in dec.get_yticklabels()] == tgt
    assert [t.get_text() for t in cross.get_yticklabels()] == tgt  # queries: target
    assert [t.get_text() for t in cross.get_xticklabels()] == src  # keys: source
    expected = layout["decoder"][0]["cross_attention"][0].mean(0)
    np.testing.assert_allclose(cross.images[0].get_array(), expected)


def test_flow_selects_layers_heads_and_leaves_missing_cells_empty():
    layout = encoder_decoder(np.random.default_rng(1), enc_layers=3, dec_layers=1)
    fig = plot_attention_flow(layout, layers=[-1], head=1, axes="cartesian")
    check_figure(fig, 1)  # layer 2: the encoder only
    assert titles(fig)[0].endswith("layer 2")
    np.testing.assert_allclose(
        panels(fig)[0].images[0].get_array(), layout["encoder"][2]["self_attention"][0, 1].numpy().T
    )
    check_figure(plot_attention_flow(layout, layers=0), 3)


@pytest.mark.parametrize(
    "structured, kwargs, error, match",
    [
        ({"encoder": [{"attention": np.ones((1, 2, 3, 3))}]}, {}, ValueError, "'self_attention' or"),
        ({}, {}, ValueError, "needs blocks under"),
        (None, {"call": 0}, ValueError, "call= picks a call of an AttentionMaps"),
        ([np.ones(3)], {}, ValueError, r"structured: layer 0 has shape \(3,\)"),
        ("x", {}, TypeError, "structured"),
        (None, {"layers": [5]}, IndexError, "valid: 0..1, or -2..-1"),
        (None, {"source_tokens": ["a"]}, ValueError, "source_tokens has 1 labels"),
    ],
)
def test_flow_refuses_bad_input(structured, kwargs, error, match):
    if structured is None:
        structured = encoder_decoder(np.random.default_rng(2))
    with pytest.raises(error, match=match):
        plot_attention_flow(structured, **kwargs)


def test_distance_plot_has_a_dot_per_head_and_layer_at_the_analysis_values():
    maps = softmax_maps(np.random.default_rng(3), 3, 2, 4, 10, 10)  # 3 layers, batch 2, 4 heads, 3 x 3
    fig = plot_attention_distance(maps, patch_size=16)
    check_figure(fig, 1, images_per_panel=0)
    ax = panels(fig)[0]
    dots = ax.collections
    assert len(dots) == 4
    # The batch mean of each layer's distances.
    expected = np.stack([mean_attention_distance(m, None, patch_size=16).mean(0) for m in maps])
    for head, dot in enumerate(dots):
        np.testing.assert_allclose(dot.get_offsets(), np.c_[np.arange(3), expected[:, head]])
    assert ax.get_xlabel() == "layer" and "pixels" in ax.get_ylabel()
    one = plot_attention_distance(list(maps), batch=1, layers=[1], vmax=40)
    (first, *_) = panels(one)[0].collections
    assert first.get_offsets()[0][1] == pytest.approx(mean_attention_distance(maps[1, 1], None)[0])
    assert panels(one)[0].get_ylim()[1] == 40 and "patches" in panels(one)[0].get_ylabel()


def test_distance_plot_with_one_head_and_registers():
    maps = softmax_maps(np.random.default_rng(4), 2, 1, 7, 7)  # 2 layers, 1 head, CLS + 2 regs + 2 x 2
    fig = plot_attention_distance(maps, prefix_tokens=3, title="regs")
    check_figure(fig, 1, images_per_panel=0)
    assert titles(fig) == ["regs"]
    with pytest.raises(ValueError, match="grid"):
        plot_attention_distance(maps, prefix_tokens=1)


def test_importing_plots_and_analysis_loads_neither_matplotlib_nor_torch():
    code = (
        "import sys, visualizer.plots, visualizer.analysis; "
        "print(sorted(m for m in ('matplotlib', 'torch') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
