"""AttentionMaps.from_arrays: one rule for plain maps, and every function the same on every form.

The rule: a tuple or list holds layers; one array of 5 axes is (layers, batch, heads, queries,
keys), of 4 one layer (batch, heads, queries, keys), of 3 one layer of one item, of 2 one head.
Every analysis, plot and view function converts its input with it, so each must give on every
form what it gives on a capture of the same maps; this is checked here against a real capture
of a timm ViT, a Hugging Face BART's eager outputs and a Llama's ``generate()`` attentions.
"""

import re

import numpy as np
import pytest
import torch
from analysis.declared_maps import captured_seq2seq, captured_vit
from matplotlib.figure import Figure
from tiny_models import tiny_llama

from visualizer import AttentionMaps, capture_attention
from visualizer.analysis import attention_stats, entropy, mean_attention_distance, rollout, top_k_pairs
from visualizer.plots import (
    plot_attention_distance,
    plot_attention_flow,
    plot_cls_attention,
    plot_grid_to_grid,
    plot_head,
    plot_head_grid,
    plot_heads,
    plot_layers,
    plot_rollout,
    plot_token_heatmap,
)
from visualizer.view import head_view, image_view, model_view, text_view


def softmax(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).softmax(-1)


# -- the rule --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "given, layers, shape, paths",
    [
        (softmax(5, 5), 1, (1, 1, 5, 5), ["layer 0"]),
        (softmax(2, 5, 5), 1, (1, 2, 5, 5), ["layer 0"]),
        (softmax(3, 2, 5, 5), 1, (3, 2, 5, 5), ["layer 0"]),
        (softmax(4, 3, 2, 5, 5), 4, (3, 2, 5, 5), ["layer 0", "layer 1", "layer 2", "layer 3"]),
        ([softmax(2, 5, 5), softmax(2, 5, 5)], 2, (1, 2, 5, 5), ["layer 0", "layer 1"]),
        ((softmax(3, 2, 5, 5),), 1, (3, 2, 5, 5), ["layer 0"]),
        ({"a": softmax(2, 5, 5), "b": [softmax(2, 5, 5)] * 2}, 3, (1, 2, 5, 5), ["a", "b[0]", "b[1]"]),
    ],
    ids=["2-axes", "3-axes", "4-axes", "5-axes", "list", "tuple", "dict"],
)
def test_the_rule_for_plain_maps(given, layers, shape, paths):
    maps = AttentionMaps.from_arrays(given)
    assert len(maps) == layers and maps.names == paths
    assert all(maps.shape(i) == shape for i in range(layers))
    info = maps.info(0)
    assert (info.role, info.kind, info.adapter, info.calls, info.layout.grid) == (
        None,
        None,
        "arrays",
        1,
        None,
    )
    first = given if isinstance(given, torch.Tensor) and given.dim() < 5 else None
    if first is not None:  # one layer: the map itself, a batch and a head axis added where missing
        assert torch.equal(maps[0], first.reshape(shape))


def test_tensors_are_detached_not_copied_and_numpy_stays_numpy():
    leaf = softmax(1, 2, 4, 4).requires_grad_()
    weights = leaf * 1  # part of a graph
    maps = AttentionMaps.from_arrays((weights, leaf.half()))
    assert not maps[0].requires_grad and maps[0].data_ptr() == weights.data_ptr()
    assert maps[1].dtype == torch.float16  # kept; read as float32 by every function
    np.testing.assert_allclose(entropy(maps, layer=1), entropy(leaf.detach(), layer=0), atol=2e-3)
    plain = np.random.default_rng(0).dirichlet(np.ones(4), size=(2, 3, 4))
    as_numpy = AttentionMaps.from_arrays(plain)
    assert isinstance(as_numpy[0], np.ndarray) and np.shares_memory(as_numpy[0], plain)
    assert isinstance(as_numpy.read(0, heads=[2, 0], rows=slice(1, 3)), np.ndarray)
    np.testing.assert_array_equal(
        as_numpy.read(0, batch=1, heads=[2, 0], rows=[3]), plain[[1]][:, [2, 0]][:, :, [3]]
    )
    assert as_numpy.stack().shape == (1, 2, 3, 4, 4) and as_numpy.kept_bytes() == plain.nbytes
    assert AttentionMaps.from_arrays(as_numpy) is as_numpy


@pytest.mark.parametrize(
    "given, error, match",
    [
        (softmax(1, 1, 1, 1, 2, 2), ValueError, r"shape \(1, 1, 1, 1, 2, 2\): a tuple or list holds layers"),
        ([softmax(1, 1, 1, 2, 2)], ValueError, r"layer 0 has shape \(1, 1, 1, 2, 2\)"),
        ([softmax(2)], ValueError, r"layer 0 has shape \(2,\)"),
        ([softmax(1, 0, 2)], ValueError, "empty dimension"),
        ([], ValueError, "is empty"),
        ({}, ValueError, "is empty"),
        ("maps.npy", TypeError, "must be an AttentionMaps or plain maps.*not str"),
        (None, TypeError, "not NoneType"),
        (3, TypeError, "not int"),
        ([np.array([["a"]])], TypeError, "real numbers"),
        ([torch.ones(2, 2, dtype=torch.complex64)], TypeError, "real numbers"),
        ([(softmax(2, 2),), (softmax(2, 2), softmax(2, 2))], ValueError, "different numbers of layers"),
    ],
)
def test_bad_input_is_refused_with_the_rule(given, error, match):
    with pytest.raises(error, match=match):
        AttentionMaps.from_arrays(given)


def test_role_and_kind_are_declared_as_given_and_checked():
    maps = AttentionMaps.from_arrays([softmax(2, 3, 5)], role="decoder", kind="cross")
    assert (maps.info(0).role, maps.info(0).kind) == ("decoder", "cross")
    with pytest.raises(
        ValueError, match="rollout\\(\\): layer 0 is declared cross-attention|cannot be chained"
    ):
        rollout(AttentionMaps.from_arrays([softmax(2, 5, 5)], kind="cross"))
    with pytest.raises(ValueError, match="role must be one of"):
        AttentionMaps.from_arrays([softmax(2, 5, 5)], role="middle")


# -- every function, every form: the same as on a capture -----------------------------------------------


@pytest.fixture(scope="module")
def vit():
    pytest.importorskip("timm")
    maps = captured_vit()
    for i in range(len(maps)):
        maps[i]  # built once and cached: every read below slices the same tensors as the forms hold
    return maps


FORMS = {
    "dict of numpy": lambda maps: {path: m.numpy() for path, m in maps.items()},
    "list of numpy": lambda maps: [m.numpy() for m in maps],
    "tuple that requires grad": lambda maps: tuple(m.clone().requires_grad_() for m in maps),
    "5-axis tensor": lambda maps: maps.stack(),
}

TOKENS = [f"t{i}" for i in range(17)]
IMAGE = np.linspace(0, 1, 32 * 32 * 3).reshape(32, 32, 3)

ANALYSES = {
    "rollout": lambda x: rollout(x, discard_ratio=0.3),
    "entropy": lambda x: entropy(x, layer=1),
    "top_k_pairs": lambda x: top_k_pairs(x, 5, layer=1, item=1, head=0),
    "mean_attention_distance": lambda x: mean_attention_distance(x),
    "mean_attention_distance(layer=2)": lambda x: mean_attention_distance(x, layer=2),
}

PLOTS = {
    "plot_head": lambda x: plot_head(x, layer=1, head=1, batch=1),
    "plot_heads": lambda x: plot_heads(x, layer=1),
    "plot_head_grid": lambda x: plot_head_grid(x, layer=2, heads=[1, 0]),
    "plot_layers": lambda x: plot_layers(x, layers=[0, 2], batch=1),
    "plot_token_heatmap": lambda x: plot_token_heatmap(x, TOKENS, layer=0),
    "plot_grid_to_grid": lambda x: plot_grid_to_grid(IMAGE, x, layer=1, query=(1, 2)),
    "plot_cls_attention": lambda x: plot_cls_attention(IMAGE, x, layers=[1, 2]),
    "plot_rollout": lambda x: plot_rollout(IMAGE, x, batch=1),
    "plot_attention_distance": lambda x: plot_attention_distance(x),
    "plot_attention_flow": lambda x: plot_attention_flow(x, batch=1),
}

VIEWS = {
    "head_view": lambda x: head_view(x, TOKENS, batch=1),
    "model_view": lambda x: model_view(x, TOKENS),
    "image_view": lambda x: image_view(x, IMAGE),
    "text_view": lambda x: text_view(x, TOKENS, batch=1),
}


def drawn(fig: Figure) -> list:
    """Everything a figure shows as numbers: each panel's images and scatter points."""
    return [
        [np.asarray(image.get_array()) for image in ax.images]
        + [np.asarray(c.get_offsets()) for c in ax.collections if hasattr(c, "get_offsets")]
        for ax in fig.axes
    ]


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("function", [*ANALYSES, *PLOTS, *VIEWS, "attention_stats"])
def test_every_function_gives_on_every_form_what_it_gives_on_the_capture(vit, form, function):
    plain = FORMS[form](vit)
    if function in ANALYSES:
        expected, got = ANALYSES[function](vit), ANALYSES[function](plain)
        np.testing.assert_allclose(got, expected, rtol=1e-6)
    elif function in PLOTS:
        expected, got = drawn(PLOTS[function](vit)), drawn(PLOTS[function](plain))
        assert [len(panel) for panel in got] == [len(panel) for panel in expected]
        for ours, theirs in zip(got, expected):
            for a, b in zip(ours, theirs):
                np.testing.assert_allclose(a, b, rtol=1e-6)
    elif function in VIEWS:
        expected = VIEWS[function](vit).html
        if form != "dict of numpy":  # the capture's paths are the dict's keys; other forms say "layer i"
            for i, path in enumerate(vit.names):
                expected = expected.replace(f'"{path}"', f'"layer {i}"')
        ids = re.compile(r"tvz-[0-9a-f]{16}")  # each view's own random id
        assert ids.sub("tvz-id", VIEWS[function](plain).html) == ids.sub("tvz-id", expected)
    else:
        numbers = ("layer", "layout", "call", "shape", "mean", "std", "min", "max", "entropy")
        expected, got = attention_stats(vit)["layers"], attention_stats(plain)["layers"]
        assert [{k: e[k] for k in numbers} for e in got] == [{k: e[k] for k in numbers} for e in expected]


def test_an_unbatched_form_gives_results_without_the_batch_axis(vit):
    items = [m[1].numpy() for m in vit]  # (heads, T, T) per layer: one item
    np.testing.assert_allclose(rollout(items), rollout(vit)[1], rtol=1e-6)
    np.testing.assert_allclose(entropy(items, layer=2), entropy(vit, layer=2)[1], rtol=1e-6)
    np.testing.assert_allclose(mean_attention_distance(items), mean_attention_distance(vit)[:, 1], rtol=1e-6)
    np.testing.assert_allclose(mean_attention_distance(items[0]), mean_attention_distance(vit, layer=0)[1])


# -- Hugging Face outputs: roles and kinds declared, generate() steps as calls ------------------------------


def test_a_hugging_face_encoder_decoder_output_declares_what_its_capture_declares():
    _, captured, _, out = captured_seq2seq("bart", src=5, tgt=4)
    maps = AttentionMaps.from_arrays(out)
    declared = [(i.role, i.kind, i.depth) for i in maps.infos]
    assert declared == [(i.role, i.kind, i.depth) for i in captured.infos]
    assert maps.names[:3] == ["encoder_attentions[0]", "encoder_attentions[1]", "decoder_attentions[0]"]
    assert maps.names[3] == "cross_attentions[0]" and maps.info(3).block == maps.info(2).block
    for ours, theirs in zip(maps, captured):
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)
    source, target = list("abcde"), list("wxyz")
    expected = drawn(plot_attention_flow(captured, source_tokens=source, target_tokens=target))
    for ours, theirs in zip(
        drawn(plot_attention_flow(out, source_tokens=source, target_tokens=target)), expected
    ):
        for a, b in zip(ours, theirs):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    view = head_view(out, source, decoder_tokens=target)
    assert "Encoder self" in view.html and "Cross" in view.html


def test_generate_attentions_become_the_calls_of_each_layer():
    model = tiny_llama(attn_implementation="eager")
    prompt = torch.randint(0, 64, (1, 5), generator=torch.Generator().manual_seed(0))
    with capture_attention(model) as captured, torch.no_grad():
        out = model.generate(
            prompt, max_new_tokens=3, do_sample=False, output_attentions=True, return_dict_in_generate=True
        )
    maps = AttentionMaps.from_arrays(out.attentions)  # steps x layers
    assert len(maps) == len(captured) and [i.calls for i in maps.infos] == [3] * len(maps)
    for i in range(len(maps)):
        torch.testing.assert_close(maps.generation(i), captured.generation(i), rtol=1e-4, atol=1e-5)
    tokens = [f"t{i}" for i in range(8)]  # the last generated token has no row
    stitched = [maps.generation(i) for i in range(len(maps))]
    ids = re.compile(r"tvz-[0-9a-f]{16}")  # each view's own random id
    view = text_view(out.attentions, tokens, prompt_length=5)
    assert ids.sub("", view.html) == ids.sub("", text_view(stitched, tokens, prompt_length=5).html)


def test_a_bert_output_is_read_by_its_fields_and_an_empty_one_names_the_fix():
    import transformers

    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32
    )
    bert = transformers.BertModel(config).eval()
    bert.set_attn_implementation("eager")
    ids = torch.randint(0, 50, (2, 5), generator=torch.Generator().manual_seed(0))
    out = bert(ids, output_attentions=True)
    assert out[-1] == ()  # transformers 5: the last field is the empty cross_attentions
    maps = AttentionMaps.from_arrays(out)  # the empty field is left out, the hidden states ignored
    assert maps.names == ["attentions[0]", "attentions[1]"]
    np.testing.assert_allclose(entropy(out, layer=1), entropy(out.attentions, layer=1))
    fix = r"is empty.*outputs\.attentions \(outputs\[-1\].*attn_implementation=\"eager\".*capture_attention"
    for empty in (out[-1], bert(ids)):  # no attention fields at all without output_attentions
        with pytest.raises(ValueError, match=fix):
            entropy(empty, layer=0)


def test_each_field_of_an_encoder_decoder_output_goes_to_every_kind_of_function():
    _, _, _, out = captured_seq2seq("bart", src=5, tgt=4)
    source, target = list("abcde"), list("wxyz")
    fields = {"encoder_attentions": (source, source), "decoder_attentions": (target, target)}
    fields["cross_attentions"] = (target, source)
    for name, (queries, keys) in fields.items():
        field = tuple(t.clone().requires_grad_() for t in getattr(out, name))
        assert entropy(field, layer=1).shape == (1, 2)  # (batch, heads)
        assert len(top_k_pairs(field, 3, layer=0, item=0, head=1)) == 3
        assert len(plot_heads(field, layer=1, batch=0).axes) == 2 + 1 + 1  # 2 heads, their mean, a colorbar
        plot_token_heatmap(field, queries, key_tokens=keys, layer=0)
        assert "<script" in head_view(field, queries, key_tokens=None if keys is queries else keys).html
        assert "<script" in model_view(field).html
    view = model_view(out, source, decoder_tokens=target)  # the three sections, as from the capture
    assert all(name in view.html for name in ("Encoder self", "Decoder self", "Cross"))
    assert "2 layers x 2 heads, 4 tokens" in repr(text_view(out.decoder_attentions, target))
