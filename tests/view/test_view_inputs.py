"""What head_view and image_view accept, what they refuse, and how the errors read."""

import numpy as np
import pytest
from analysis.declared_maps import build, info
from view_data import config_of, softmax_maps

from visualizer._arrays import as_maps, as_rgb_uint8
from visualizer.view import head_view, image_view
from visualizer.view._attention_view import AttentionView
from visualizer.view._document import Fragment
from visualizer.view._maps import stack_layers


def stack_attentions(attentions, **kwargs):
    """What a view reads of ``attentions``: converted at its entry, then stacked."""
    return stack_layers(as_maps(attentions, "attentions").maps, **kwargs)


TOKENS = ["[CLS]", "a", "b", "c", "[SEP]"]


PATHS = ["encoder.layer.0.attention", "encoder.layer.1.attention"]


def declared(maps):
    """An AttentionMaps (through MapsBuilder) of ``maps``, declared at PATHS with a tokens layout."""
    torch = pytest.importorskip("torch")
    return build([(info(path, i), torch.from_numpy(m)) for i, (path, m) in enumerate(zip(PATHS, maps))])


# -- shapes and kinds ------------------------------------------------------------------------


def test_every_accepted_layout_gives_the_same_stack(maps):
    expected = np.stack([layer[0] for layer in maps])  # (layers, heads, queries, keys) of batch item 0
    layouts = [
        maps,  # per-layer (batch, heads, q, k)
        [layer[0] for layer in maps],  # per-layer (heads, q, k)
        tuple(maps),
        np.stack(maps),  # (layers, batch, heads, q, k)
    ]
    for layout in layouts:
        np.testing.assert_array_equal(stack_attentions(layout).maps, expected)
    # One array of 4 axes is one layer, (batch, heads, q, k); of 3 axes one layer of one item.
    np.testing.assert_array_equal(stack_attentions(maps[1], batch=1).maps, maps[1][1][None])
    np.testing.assert_array_equal(stack_attentions(maps[1][1]).maps, maps[1][1][None])
    second = np.stack([layer[1] for layer in maps])
    np.testing.assert_array_equal(stack_attentions(maps, batch=1).maps, second)
    np.testing.assert_array_equal(stack_attentions(maps, batch=-1).maps, second)


def test_torch_tensors_of_any_float_dtype():
    torch = pytest.importorskip("torch")
    maps = [torch.from_numpy(softmax_maps((1, 2, 4, 4), seed=i)) for i in range(2)]
    for dtype in (torch.float32, torch.float16, torch.bfloat16, torch.float64):
        stack = stack_attentions([m.to(dtype) for m in maps])
        assert stack.maps.dtype == np.float32
        np.testing.assert_allclose(stack.maps, np.stack([m[0].numpy() for m in maps]), atol=1e-2)
    stacked = stack_attentions(torch.stack(maps)).maps
    np.testing.assert_array_equal(stacked, np.stack([m[0].numpy() for m in maps]))


def test_layer_labels_come_from_declared_paths_and_follow_the_selection(maps):
    stack = stack_attentions(declared(maps), layers=[-1], heads=[2, 0])
    assert stack.layer_labels == ["encoder.layer.1.attention"]
    assert stack.head_labels == ["2", "0"]
    np.testing.assert_array_equal(stack.maps, maps[1][0][[2, 0]][None])
    assert stack_attentions(maps, layers=1).layer_labels == ["layer 1"]

    # A plain list with a .names attribute is still a plain list: nothing is read from it.
    class Named(list):
        names = PATHS

    assert stack_attentions(Named(maps)).layer_labels == ["layer 0", "layer 1"]
    # A torch tensor's .names are dimension names, never layer labels.
    torch = pytest.importorskip("torch")
    assert stack_attentions(torch.from_numpy(np.stack(maps))).layer_labels == ["layer 0", "layer 1"]


def test_the_view_shows_names_tokens_and_selection(maps):
    document = head_view(declared(maps), TOKENS, include_heads=[1], title="t").html
    config = config_of(document)
    assert config["layers"] == PATHS
    assert config["heads"] == ["1"]
    assert config["tokens"] == TOKENS
    assert config["maps"]["shape"] == [2, 1, 5, 5]


# -- what is refused ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "attentions, error, message",
    [
        (np.zeros((1, 3, 1, 3, 5, 5)), ValueError, r"\(layers, batch, heads, queries, keys\) for several"),
        (np.zeros(5), ValueError, r"attentions has shape \(5,\): a tuple or list holds layers"),
        ([], ValueError, "attentions is empty"),
        ({"Attention.forward": []}, ValueError, "attentions is empty"),
        ("maps", TypeError, "must be an AttentionMaps or plain maps"),
        (42, TypeError, "must be an AttentionMaps or plain maps"),
        ([np.zeros(5)], ValueError, r"attentions: layer 0 has shape \(5,\)"),
        ([np.zeros((1, 2, 5, 5)), np.zeros((1, 3, 5, 5))], ValueError, "same number of heads"),
        ([np.zeros((1, 2, 5, 5)), np.zeros((1, 2, 4, 5))], ValueError, "queries and keys must agree"),
        ([np.array([[["a"]]])], TypeError, "must hold real numbers"),
        ([np.full((1, 2, 2), np.nan)], ValueError, "NaN or infinite"),
        ([np.full((1, 2, 2), -0.5)], ValueError, r"negative values \(min -0.5\).*softmax probabilities"),
        ([np.zeros((1, 0, 2, 2))], ValueError, "empty dimension"),
    ],
)
def test_bad_attentions_are_refused_with_the_cause(attentions, error, message):
    with pytest.raises(error, match=message):
        stack_attentions(attentions)


def test_out_of_range_selections_name_the_valid_range(maps):
    with pytest.raises(IndexError, match=r"layer 2 is out of range; there are 2 layers \(valid: 0..1"):
        stack_attentions(maps, layers=[0, 2])
    with pytest.raises(IndexError, match=r"heads: head -4 is out of range; there are 3 heads"):
        stack_attentions(maps, heads=-4)
    with pytest.raises(IndexError, match=r"attentions: batch: batch item 2 is out of range; there are 2"):
        stack_attentions(maps, batch=2)
    with pytest.raises(ValueError, match="selects layer 1 more than once"):
        stack_attentions(maps, layers=[1, -1])
    with pytest.raises(ValueError, match="select at least one head"):
        stack_attentions(maps, heads=[])
    with pytest.raises(TypeError, match=r"heads: a head index must be an int, not 0.5"):
        stack_attentions(maps, heads=[0.5])
    with pytest.raises(TypeError, match="layers must be None, an int or a list of ints"):
        stack_attentions(maps, layers="0")
    with pytest.raises(TypeError, match="batch must be an int"):
        stack_attentions(maps, batch=True)


def test_tokens_must_match_the_maps(maps):
    with pytest.raises(ValueError, match="tokens has 4 entries but the maps have 5 queries"):
        head_view(maps, TOKENS[:4])
    with pytest.raises(TypeError, match="convert_ids_to_tokens"):
        head_view(maps, [101, 1, 2, 3, 102])
    with pytest.raises(TypeError, match="split it into tokens first"):
        head_view(maps, "a b c d e")
    with pytest.raises(TypeError, match="title must be a str"):
        head_view(maps, TOKENS, title=3)


def test_cross_attention_needs_key_tokens():
    cross = [softmax_maps((2, 3, 4))]  # (heads, queries=3, keys=4)
    with pytest.raises(ValueError, match="3 queries but 4 keys.*key_tokens="):
        head_view(cross, ["x", "y", "z"])
    with pytest.raises(ValueError, match="key_tokens has 3 entries but the maps have 4 keys"):
        head_view(cross, ["x", "y", "z"], key_tokens=["p", "q", "r"])
    config = config_of(head_view(cross, ["x", "y", "z"], key_tokens=["p", "q", "r", "s"]).html)
    assert config["key_tokens"] == ["p", "q", "r", "s"]


def test_grid_is_inferred_or_checked(vit_maps, picture):
    # 12 patches, a 30x40 picture (aspect 4:3): no square, so the 3x4 grid that matches the picture.
    assert config_of(image_view(vit_maps, picture).html)["grid"] == [3, 4]
    assert config_of(image_view(vit_maps, picture, grid=(4, 3)).html)["grid"] == [4, 3]
    square = [softmax_maps((1, 2, 17, 17))]
    assert config_of(image_view(square, picture).html)["grid"] == [4, 4]
    with pytest.raises(
        ValueError, match=r"grid 3 x 3 has 9 patches but the maps have 13 tokens = 1 prefix \+ 12"
    ):
        image_view(vit_maps, picture, grid=(3, 3))
    with pytest.raises(TypeError, match=r"grid must be \(rows, cols\), two ints"):
        image_view(vit_maps, picture, grid=(3.0, 4))
    with pytest.raises(ValueError, match=r"both at least 1"):
        image_view(vit_maps, picture, grid=(-3, -4))
    assert config_of(image_view(vit_maps, picture, grid=np.array([3, 4])).html)["grid"] == [3, 4]
    with pytest.raises(ValueError, match="cannot infer the patch grid.*prefix_tokens"):
        image_view(vit_maps, picture[:, :20])  # 2:3; the closest grid of 12 patches is 4x3 (3:4)
    with pytest.raises(ValueError, match="prefix_tokens must be from 0 to 12"):
        image_view(vit_maps, picture, prefix_tokens=13)
    with pytest.raises(TypeError, match="prefix_tokens must be an int"):
        image_view(vit_maps, picture, prefix_tokens="1")


def test_prefix_tokens_get_names(picture):
    registers = [softmax_maps((1, 2, 17, 17))]  # CLS + 4 registers + a 4x3 grid
    config = config_of(image_view(registers, picture, prefix_tokens=5, grid=(3, 4)).html)
    assert config["prefix"] == ["CLS", "reg1", "reg2", "reg3", "reg4"]
    assert config["maps"]["exact_keys"] == 5
    no_prefix = config_of(image_view([softmax_maps((1, 12, 12))], picture, prefix_tokens=0).html)
    assert no_prefix["prefix"] == [] and no_prefix["initial"]["query"] == 1 * 4 + 2  # the middle patch


def test_image_view_needs_self_attention(picture):
    with pytest.raises(ValueError, match="needs self-attention maps.*13 queries and 12 keys"):
        image_view([softmax_maps((1, 13, 12))], picture)


def test_images_in_every_accepted_form(picture):
    rgb = as_rgb_uint8(picture)
    np.testing.assert_array_equal(as_rgb_uint8(picture / 255.0), rgb)
    rgba = np.dstack([picture, np.full((30, 40), 9)]).astype(np.uint8)
    np.testing.assert_array_equal(as_rgb_uint8(rgba), rgb)
    gray = as_rgb_uint8(picture[..., 0])
    assert gray.shape == (30, 40, 3) and (gray[..., 2] == picture[..., 0]).all()
    torch = pytest.importorskip("torch")
    np.testing.assert_array_equal(as_rgb_uint8(torch.from_numpy(picture)), rgb)


@pytest.mark.parametrize(
    "image, error, message",
    [
        (np.zeros((3, 30, 40)), ValueError, r"channel-first.*permute\(1, 2, 0\)"),
        (np.full((30, 40, 3), 1.5), ValueError, r"float image must lie in \[0, 1\].*Undo the normalisation"),
        (np.full((30, 40, 3), 300), ValueError, "must lie in 0..255"),
        (np.zeros((30, 40, 2)), ValueError, "must be \\(height, width, 3\\) RGB"),
        (np.zeros((0, 40, 3)), ValueError, "image is empty"),
        ("cat.png", TypeError, "image must be a numpy array or a torch tensor, not str"),
    ],
)
def test_bad_images_are_refused(vit_maps, image, error, message):
    with pytest.raises(error, match=message):
        image_view(vit_maps, image)


def test_save_and_iframe_arguments(maps, tmp_path):
    view = head_view(maps, TOKENS)
    path = view.save(tmp_path / "view.html")
    assert path.read_text(encoding="utf-8") == view.html
    assert view.save(str(tmp_path / "again.html")).exists()
    with pytest.raises(FileNotFoundError, match="does not exist; create it first"):
        view.save(tmp_path / "missing" / "view.html")
    with pytest.raises(IsADirectoryError, match="is a folder"):
        view.save(tmp_path)
    with pytest.raises(TypeError, match="path must be a str or a path"):
        view.save(3)
    with pytest.raises(ValueError, match="height must be an int of at least 50"):
        view.iframe(height=10)
    assert "height:400px" in view.iframe(height=400)
    assert repr(view).startswith("<AttentionView head: 2 layers x 3 heads, 5 x 5 tokens, 0.0")


@pytest.mark.parametrize(
    "tokens, title, message",
    [
        (["a", "b\ud800", "c", "d", "e"], None, r"tokens\[1\] 'b\\ud800' cannot be encoded as UTF-8"),
        (TOKENS, "bad \udcff title", r"title 'bad \\udcff title' cannot be encoded as UTF-8"),
    ],
)
def test_text_that_cannot_be_utf8_is_refused_before_anything_is_written(
    maps, tmp_path, tokens, title, message
):
    target = tmp_path / "view.html"
    target.write_text("the old view", encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        head_view(maps, tokens, title=title).save(target)
    assert target.read_text(encoding="utf-8") == "the old view"


def test_a_failed_save_leaves_the_old_file_intact(tmp_path):
    # A document that slipped past the checks (a label with a lone surrogate) must not truncate the target.
    view = AttentionView("head", Fragment(["<div>layer \ud800</div>"]), title="t", height=100, summary="s")
    target = tmp_path / "view.html"
    target.write_text("the old view", encoding="utf-8")
    with pytest.raises(ValueError, match=r"lone surrogate '\\ud800'.*nothing was written"):
        view.save(target)
    assert target.read_text(encoding="utf-8") == "the old view"
    assert [p.name for p in tmp_path.iterdir()] == ["view.html"]  # no temporary left behind


def test_initial_layer_and_head(vit_maps, picture, maps):
    # Defaults: two thirds of the way down the kept layers; the image view on the mean, the head view
    # on one head.
    assert config_of(image_view(vit_maps, picture).html)["initial"]["layer"] == (2 * 3) // 3
    assert config_of(head_view(maps, TOKENS).html)["initial"] == {
        "layer": (2 * 2) // 3,
        "heads": [0],
        "mean": False,
    }
    # Asked ones are indices into all layers and heads, stored as positions among those kept.
    config = config_of(image_view(vit_maps, picture, layers=[2, 0], layer=0, head=-1).html)
    assert config["initial"]["layer"] == 1 and config["initial"]["head"] == 1
    assert config_of(head_view(maps, TOKENS, include_heads=[2, 1], head=1).html)["initial"]["heads"] == [1]
    assert config_of(head_view(maps, TOKENS, head="mean").html)["initial"] == {
        "layer": 1,
        "heads": [0, 1, 2],
        "mean": True,
    }


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"layer": 3}, IndexError, r"image_view\(\): layer: layer 3 is out of range; there are 3 layers"),
        ({"layer": 1.0}, TypeError, r"image_view\(\): layer: a layer index must be an int"),
        ({"layers": [0, 2], "layer": 1}, ValueError, r"layer 1 is not among the kept layers \[0, 2\]"),
        (
            {"heads": [1], "head": 0},
            ValueError,
            r"head 0 is not among the kept heads \[1\]; add it to heads=",
        ),
        ({"head": "all"}, ValueError, r"head must be a head index or one of \('mean',\), not 'all'"),
        ({"head": True}, TypeError, r"a head index must be an int, not the bool True"),
    ],
)
def test_bad_initial_layer_or_head_is_refused(vit_maps, picture, kwargs, error, message):
    with pytest.raises(error, match=message):
        image_view(vit_maps, picture, **kwargs)


def test_image_view_colours_come_from_the_colour_map_of_the_figures(vit_maps, picture):
    import matplotlib

    from visualizer.plots._colors import ATTENTION_CMAP

    table = np.array(config_of(image_view(vit_maps, picture).html)["colormap"])
    np.testing.assert_allclose(
        table, matplotlib.colormaps[ATTENTION_CMAP](np.linspace(0, 1, 64))[:, :3] * 255, atol=0.5
    )
    table = np.array(config_of(image_view(vit_maps, picture, cmap="viridis").html)["colormap"])
    np.testing.assert_allclose(
        table, matplotlib.colormaps["viridis"](np.linspace(0, 1, 64))[:, :3] * 255, atol=0.5
    )
    with pytest.raises(ValueError, match="cmap 'rainbowz' is not a matplotlib colour map"):
        image_view(vit_maps, picture, cmap="rainbowz")
