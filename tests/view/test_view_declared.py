"""Views of AttentionMaps: declared paths label layers; windows and channels refused, scattered maps shown."""

import numpy as np
import pytest
from analysis.declared_maps import captured_seq2seq, captured_swin, captured_xcit
from view_data import config_of, embedded

from visualizer import LayoutError
from visualizer.view import head_view, image_view
from visualizer.view._codec import decode_maps, max_error

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def swin():
    return captured_swin()


def test_image_view_refuses_windows_and_shows_one_scattered_layer(swin):
    _, maps, _ = swin
    image = np.zeros((56, 56, 3), np.uint8)
    with pytest.raises(
        LayoutError, match=r"attentions: layer 0 \('layers.0.blocks.0.attn'\) has layout windows"
    ):
        image_view(maps, image, prefix_tokens=0)
    with pytest.raises(LayoutError, match="maps.scatter"):
        head_view(maps, ["t"] * 49, layers=[2])
    scattered = maps.scatter(1)  # the shifted block: (2, 1, 196, 196)
    view = image_view([scattered], image, prefix_tokens=0, grid=maps.layout(1).size, batch=1)
    config = config_of(view.html)
    assert config["grid"] == [14, 14] and config["maps"]["shape"] == [1, 1, 196, 196]
    back = decode_maps(embedded(view.html, "tvz-data"), config["maps"])
    expected = scattered[1:2].numpy()
    assert (np.abs(back - expected) <= max_error(expected, config["maps"])).all()


def test_head_view_of_xcit_takes_its_token_layers_and_refuses_its_channel_layers():
    _, maps, _ = captured_xcit()
    with pytest.raises(LayoutError, match=r"layer 1 \('blocks.1.attn'\) has layout channels"):
        head_view(maps, ["c"] * 8, layers=[1])
    keys = ["CLS", "p0", "p1", "p2", "p3"]
    view = head_view(maps, ["CLS"], key_tokens=keys, layers=[2, 3])  # class attention: CLS -> tokens
    config = config_of(view.html)
    assert config["layers"] == ["cls_attn_blocks.0.attn", "cls_attn_blocks.1.attn"]
    back = decode_maps(embedded(view.html, "tvz-data"), config["maps"])
    expected = torch.stack([maps[2][0], maps[3][0]]).numpy()
    assert (np.abs(back - expected) <= max_error(expected, config["maps"])).all()


def test_head_view_of_a_bart_decoder_is_labelled_with_declared_paths_and_matches_eager():
    _, maps, (ids, decoder_ids), out = captured_seq2seq("bart")
    tokens = [f"t{i}" for i in range(decoder_ids.shape[1])]
    encoder = [f"s{i}" for i in range(ids.shape[1])]
    view = head_view(maps, encoder, decoder_tokens=tokens, layers=[2, 4])  # decoder self only
    config = config_of(view.html)
    assert config["layers"] == ["model.decoder.layers.0.self_attn", "model.decoder.layers.1.self_attn"]
    back = decode_maps(embedded(view.html, "tvz-data"), config["maps"])
    expected = torch.stack([a[0] for a in out.decoder_attentions]).numpy()
    assert (np.abs(back - expected) <= max_error(expected, config["maps"])).all()
