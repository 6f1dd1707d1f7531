"""ablate, patch, record_heads, head_means and head_effects, each against a reference written here
from the weights or with a manual hook, never through the seam:

- zero-ablating head h = the output projection with the columns that read head h set to zero
  (``nn.MultiheadAttention`` on its fast path, its slow path and sequence-first; a decoder's
  cross-attention; Swin's windows; grouped-query Llama);
- mean-ablating = those columns zeroed and ``W[:, cols] @ mean`` added to the bias;
- patching = a pre-hook on the projection that writes the recorded slice;
- head_effects = one ``ablate`` per head, whether several ablations share a forward or not.

The registries' models are checked against the zeroed-projection reference in
``test_seam_registry``.
"""

from __future__ import annotations

import copy
import os

import numpy as np
import pytest
import torch
from tiny_models import tiny_bert, tiny_encoder, tiny_llama, tiny_swin

import visualizer
from visualizer import ablate, capture_attention, head_effects, head_means, patch, record_heads
from visualizer._adapters._seam import EditPointError

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _zeroed(model, projection: str, heads: list[int], count: int):
    """A copy of ``model`` whose ``projection`` ignores ``heads`` (input columns zeroed)."""
    reference = copy.deepcopy(model)
    weight = dict(reference.named_modules())[projection].weight
    width = weight.shape[1] // count
    with torch.no_grad():
        for head in heads:
            weight[:, head * width : (head + 1) * width] = 0
    return reference


def _mha_model(batch_first: bool):
    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attn = torch.nn.MultiheadAttention(16, 4, batch_first=batch_first)
            self.head = torch.nn.Linear(16, 3)

        def forward(self, x):
            return self.head(self.attn(x, x, x, need_weights=False)[0])

    torch.manual_seed(0)
    return Net().eval()


def _transformer():
    torch.manual_seed(0)
    return torch.nn.Transformer(16, 4, 1, 2, 32, dropout=0.0, batch_first=True).eval()


def test_zero_ablation_on_mha_fast_path_equals_zeroed_out_proj():
    """TransformerEncoder in eval under no_grad runs MHA's fused fast path; ablate keeps the model's
    result otherwise and equals the reference."""
    model = tiny_encoder()
    x = torch.randn(2, 7, 16)
    reference = _zeroed(model, "layers.1.self_attn.out_proj", [2], 4)
    with torch.no_grad():
        plain = model(x)
        expected = reference(x)
        with ablate(model, {"layers.1.self_attn": [2]}):
            ablated = model(x)
        after = model(x)
    assert (expected - plain).abs().max() > 1e-3
    torch.testing.assert_close(ablated, expected, atol=1e-5, rtol=1e-5)
    assert torch.equal(after, plain)
    assert torch.backends.mha.get_fastpath_enabled()


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("grad", [False, True])
def test_zero_ablation_of_multihead_attention(batch_first, grad):
    model = _mha_model(batch_first)
    x = torch.randn(2, 5, 16) if batch_first else torch.randn(5, 2, 16)
    reference = _zeroed(model, "attn.out_proj", [0, 3], 4)
    with torch.set_grad_enabled(grad):
        expected = reference(x)
        with ablate(model, {0: [0, 3]}):
            ablated = model(x)
    torch.testing.assert_close(ablated, expected, atol=1e-5, rtol=1e-5)
    if grad:  # gradients flow through an ablated run
        ablated.sum().backward()
        assert model.attn.in_proj_weight.grad is not None


def test_zero_ablation_of_cross_attention_in_nn_transformer():
    model = _transformer()
    src, tgt = torch.randn(2, 6, 16), torch.randn(2, 4, 16)
    reference = _zeroed(model, "decoder.layers.1.multihead_attn.out_proj", [1], 4)
    with torch.no_grad():
        expected = reference(src, tgt)
        with ablate(model, {"decoder.layers.1.multihead_attn": [1]}):
            ablated = model(src, tgt)
        assert (expected - model(src, tgt)).abs().max() > 1e-3
    torch.testing.assert_close(ablated, expected, atol=1e-5, rtol=1e-5)


def test_zero_ablation_in_windowed_layers_replaces_every_windows_head():
    model = tiny_swin()
    x = torch.randn(2, 3, 56, 56)
    name = "layers.1.blocks.0.attn"
    reference = _zeroed(model, f"{name}.proj", [3], 4)
    with torch.no_grad():
        expected = reference(x)
        with ablate(model, {name: [3]}):
            ablated = model(x)
    torch.testing.assert_close(ablated, expected, atol=1e-5, rtol=1e-5)


def test_grouped_query_heads_are_query_heads():
    """Llama with 4 query heads sharing 2 key heads: head 1 is the second query head alone."""
    model = tiny_llama(attn_implementation="sdpa")
    ids = torch.randint(0, 100, (2, 9))
    reference = _zeroed(model, "model.layers.0.self_attn.o_proj", [1], 4)
    with torch.no_grad():
        expected = reference(ids).logits
        with ablate(model, {0: [1]}):
            ablated = model(ids).logits
    torch.testing.assert_close(ablated, expected, atol=1e-5, rtol=1e-5)


def test_mean_ablation_equals_the_mean_as_a_bias():
    model = tiny_bert().eval()
    ids, other = torch.randint(0, 100, (3, 8)), torch.randint(0, 100, (2, 11))
    name, projection = "encoder.layer.1.attention.self", "encoder.layer.1.attention.output.dense"
    means = head_means(model, ids)
    assert means[name].shape == (4, 8)
    # the mean written here: the head outputs are the projection's input, by a hook
    kept = []
    hook = dict(model.named_modules())[projection].register_forward_pre_hook(lambda m, a: kept.append(a[0]))
    with torch.no_grad():
        model(ids)
    hook.remove()
    mean = kept[0].reshape(-1, 4, 8).mean(0)
    torch.testing.assert_close(means[name], mean, atol=1e-6, rtol=1e-6)
    reference = _zeroed(model, projection, [0, 2], 4)
    dense = dict(reference.named_modules())[projection]
    weight = dict(model.named_modules())[projection].weight
    with torch.no_grad():
        for head in (0, 2):
            dense.bias += weight[:, head * 8 : (head + 1) * 8] @ mean[head]
        expected = reference(other).last_hidden_state
        with ablate(model, {name: [0, 2]}, "mean", values=means):
            ablated = model(other).last_hidden_state
    torch.testing.assert_close(ablated, expected, atol=1e-5, rtol=1e-5)


def test_per_position_means_need_the_same_length():
    model = tiny_bert().eval()
    ids = torch.randint(0, 100, (3, 8))
    means = head_means(model, ids, per_position=True)
    assert means["encoder.layer.0.attention.self"].shape == (4, 8, 8)
    with torch.no_grad(), ablate(model, {0: [1]}, "mean", values=means):
        model(ids)
        with pytest.raises(ValueError, match="positions must line up"):
            model(torch.randint(0, 100, (3, 9)))


def test_a_function_replaces_heads_and_is_checked():
    model = tiny_llama(attn_implementation="sdpa")
    ids = torch.randint(0, 100, (2, 9))
    seen = []

    def zeros(layer, head, output):
        seen.append((layer, head, tuple(output.shape)))
        return torch.zeros_like(output)

    with torch.no_grad():
        with ablate(model, {1: [0, 2]}):
            expected = model(ids).logits
        with ablate(model, {1: [0, 2]}, zeros):
            replaced = model(ids).logits
        assert torch.equal(replaced, expected)
        assert seen == [
            ("model.layers.1.self_attn", 0, (2, 9, 16)),
            ("model.layers.1.self_attn", 2, (2, 9, 16)),
        ]
        with (
            ablate(model, {1: [0]}, lambda layer, head, out: torch.zeros(3)),
            pytest.raises(ValueError, match="shape"),
        ):
            model(ids)
        with ablate(model, {1: [0]}, lambda layer, head, out: 0.0), pytest.raises(TypeError, match="tensor"):
            model(ids)


def test_patching_equals_a_manual_hook():
    model = tiny_llama(attn_implementation="sdpa")
    clean, corrupted = torch.randint(0, 100, (2, 9)), torch.randint(0, 100, (2, 9))
    o_proj = model.model.layers[1].self_attn.o_proj
    kept = []
    hook = o_proj.register_forward_pre_hook(lambda m, a: kept.append(a[0].clone()))
    with torch.no_grad():
        model(clean)
    hook.remove()

    def substitute(module, args):
        x = args[0].clone()
        x[..., 16:32] = kept[0][..., 16:32]  # head 1 of 4, head dim 16
        return (x, *args[1:])

    hook = o_proj.register_forward_pre_hook(substitute)
    with torch.no_grad():
        expected = model(corrupted).logits
    hook.remove()
    record = record_heads(model, clean)
    assert record["model.layers.1.self_attn"][0].shape == (2, 4, 9, 16)
    with torch.no_grad():
        with patch(model, record, {"model.layers.1.self_attn": [1]}):
            patched = model(corrupted).logits
            again = model(corrupted).logits  # each forward starts from the first recorded call
        plain = model(corrupted).logits
    torch.testing.assert_close(patched, expected, atol=1e-6, rtol=1e-6)
    assert torch.equal(patched, again)
    assert (patched - plain).abs().max() > 1e-4
    one = record_heads(model, clean[:1])  # a source batch of one serves every item
    with torch.no_grad(), patch(model, one, {1: [1]}):
        model(corrupted)
    with (
        torch.no_grad(),
        patch(model, record, {1: [1]}),
        pytest.raises(ValueError, match="positions do not line up"),
    ):
        model(torch.randint(0, 100, (2, 7)))
    with pytest.raises(TypeError, match="record_heads"):
        with patch(model, {"model.layers.1.self_attn": kept}, {1: [1]}):
            pass
    partial = record_heads(model, clean, layers=[0])
    with pytest.raises(KeyError, match="model.layers.1.self_attn"):
        with patch(model, partial, {1: [1]}):
            pass


def _loss(out):
    return out.logits[:, -1].log_softmax(-1)[:, 7].mean()


def test_head_effects_are_one_ablation_per_head_batched_or_not():
    model = tiny_llama(attn_implementation="sdpa")
    ids = torch.randint(0, 100, (2, 9))
    batched = head_effects(model, ids, _loss)
    single = head_effects(model, ids, _loss, per_forward=1)
    assert batched.values.shape == (2, 4) and batched.layers == (
        "model.layers.0.self_attn",
        "model.layers.1.self_attn",
    )
    with torch.no_grad():
        clean = _loss(model(ids)).item()
        manual = np.zeros((2, 4))
        for layer in range(2):
            for head in range(4):
                with ablate(model, {layer: [head]}):
                    manual[layer, head] = _loss(model(ids)).item() - clean
    assert batched.clean == pytest.approx(clean)
    np.testing.assert_allclose(batched.values, manual, atol=1e-5)
    np.testing.assert_allclose(single.values, manual, atol=1e-5)
    assert np.abs(manual).max() > 1e-3
    np.testing.assert_array_equal(np.asarray(batched), batched.values)
    top = batched.top(2)
    assert abs(top[0][2]) == np.abs(manual).max()
    np.testing.assert_array_equal(batched.layer("model.layers.1.self_attn"), batched.values[1])
    np.testing.assert_array_equal(batched.layer(-1), batched.values[1])


def test_head_effects_fall_back_where_the_batch_cannot_be_repeated():
    """A scalar loss in the output, or a sequence-first model: one forward per ablation, same effects."""
    model = tiny_llama(attn_implementation="sdpa")
    ids = torch.randint(0, 100, (2, 9))
    with_loss = head_effects(model, {"input_ids": ids, "labels": ids}, lambda out: out.loss)
    with torch.no_grad():
        clean = model(ids, labels=ids).loss.item()
        with ablate(model, {1: [3]}):
            expected = model(ids, labels=ids).loss.item() - clean
    assert with_loss.values[1, 3] == pytest.approx(expected, abs=1e-6)
    sequence_first = _mha_model(batch_first=False)
    x = torch.randn(5, 2, 16)
    effects = head_effects(sequence_first, x, lambda out: out.pow(2).mean())
    with torch.no_grad():
        clean = sequence_first(x).pow(2).mean().item()
        with ablate(sequence_first, {0: [2]}):
            expected = sequence_first(x).pow(2).mean().item() - clean
    assert effects.values[0, 2] == pytest.approx(expected, abs=1e-6)


def test_head_effects_of_layers_with_different_head_counts_are_a_list():
    model = tiny_swin()
    x = torch.randn(1, 3, 56, 56)
    effects = head_effects(model, x, lambda out: out[:, 0].mean())
    assert isinstance(effects.values, list) and [len(row) for row in effects.values] == [2, 4]
    with pytest.raises(ValueError, match="list of per-layer arrays"):
        np.asarray(effects)
    with torch.no_grad():
        clean = model(x)[:, 0].mean().item()
        with ablate(model, {"layers.1.blocks.0.attn": [2]}):
            expected = model(x)[:, 0].mean().item() - clean
    assert effects.values[1][2] == pytest.approx(expected, abs=1e-6)


def test_the_model_is_as_before_after_an_exception_and_nesting_works():
    model = tiny_llama(attn_implementation="sdpa")
    ids = torch.randint(0, 100, (2, 9))
    with torch.no_grad():
        plain = model(ids).logits
    with pytest.raises(RuntimeError, match="inside"):
        with ablate(model, {0: [1]}):
            raise RuntimeError("inside")
    reference = _zeroed(
        _zeroed(model, "model.layers.0.self_attn.o_proj", [1], 4), "model.layers.1.self_attn.o_proj", [2], 4
    )
    with torch.no_grad():
        assert torch.equal(model(ids).logits, plain)
        expected = reference(ids).logits
        with capture_attention(reference) as reference_maps:
            reference(ids)
        # a capture inside two nested ablations records the ablated run's maps
        with ablate(model, {0: [1]}), ablate(model, {1: [2]}), capture_attention(model) as inside:
            nested = model(ids).logits
        with capture_attention(model) as outside, ablate(model, {1: [2]}), ablate(model, {0: [1]}):
            reversed_order = model(ids).logits
        assert torch.equal(model(ids).logits, plain)
    torch.testing.assert_close(nested, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(reversed_order, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(inside[1], reference_maps[1], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(outside[1], reference_maps[1], atol=1e-5, rtol=1e-5)
    assert (inside[1] - capture_maps(model, ids)[1]).abs().max() > 1e-4  # layer 1's input changed


def capture_maps(model, ids):
    with torch.no_grad(), capture_attention(model) as maps:
        model(ids)
    return maps


BAD = [
    ({5: [0]}, "zero", IndexError, r"valid: 0\.\.1"),
    ({0: [4]}, "zero", IndexError, r"valid: 0\.\.3"),
    ({0: ["1"]}, "zero", TypeError, "int"),
    ({0: [1.0]}, "zero", TypeError, "int"),
    ({0: [1, 1]}, "zero", ValueError, "more than once"),
    ({0: "some"}, "zero", ValueError, '"all"'),
    ({0: [1], "model.layers.0.self_attn": [2]}, "zero", ValueError, "more than once"),
    ({"model.layers.9.self_attn": [0]}, "zero", ValueError, "matches no attention module"),
    ({}, "zero", ValueError, "empty"),
    ([0, 1], "zero", TypeError, "mapping"),
    ({0: [1]}, "max", ValueError, '"zero", "mean"'),
    ({0: [1]}, "mean", TypeError, "head_means"),
]


@pytest.mark.parametrize(("heads", "how", "error", "message"), BAD)
def test_bad_selections_are_one_clear_error_before_the_model_runs(heads, how, error, message):
    model = tiny_llama(attn_implementation="sdpa")
    runs = []
    hook = model.register_forward_pre_hook(lambda m, a: runs.append(1))
    with pytest.raises(error, match=message):
        with ablate(model, heads, how):
            model(torch.randint(0, 100, (1, 4)))
    hook.remove()
    assert not runs
    assert not model._forward_pre_hooks and not model.model.layers[0].self_attn.o_proj._forward_pre_hooks


def test_models_without_supported_attention_or_edit_points_are_refused():
    with pytest.raises(ValueError, match="no attention module"):
        with ablate(torch.nn.Linear(3, 3), {0: [0]}):
            pass
    from transformers import DiffLlamaConfig, DiffLlamaForCausalLM

    torch.manual_seed(0)
    config = DiffLlamaConfig(
        vocab_size=50,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    model = DiffLlamaForCausalLM(config).eval()
    with pytest.raises(EditPointError, match="groupnorm"):
        with ablate(model, {0: [0]}):
            pass
    with pytest.raises(TypeError, match="one number"):
        head_effects(tiny_llama(), torch.randint(0, 100, (1, 4)), lambda out: out.logits)
    with pytest.raises(TypeError, match="function"):
        head_effects(tiny_llama(), torch.randint(0, 100, (1, 4)), "loss")


def test_plot_head_effects_draws_every_head():
    import matplotlib.colors

    from visualizer.plots import plot_head_effects

    effects = visualizer.HeadEffects(np.array([[0.5, -1.0], [0.0, 2.0]]), ("a.attn", "b.attn"), 1.0, "zero")
    fig = plot_head_effects(effects, metric="loss")
    ax = fig.axes[0]
    image = ax.images[0]
    np.testing.assert_array_equal(image.get_array().data, effects.values)
    assert isinstance(image.norm, matplotlib.colors.TwoSlopeNorm) and image.norm.vmax == 2.0
    assert [label.get_text() for label in ax.get_yticklabels()] == ["a.attn", "b.attn"]
    assert "loss" in fig.axes[1].get_ylabel()
    ragged = plot_head_effects([np.array([1.0]), np.array([1.0, -3.0])])
    assert np.isnan(ragged.axes[0].images[0].get_array().filled(np.nan)[0, 1])
    with pytest.raises(ValueError, match="layers, heads"):
        plot_head_effects(np.zeros(3))
    with pytest.raises(TypeError, match="head_effects"):
        plot_head_effects("effects")
    with pytest.raises(ValueError, match="2 layer names"):
        plot_head_effects(np.zeros((3, 2)), layers=["a", "b"])


def test_means_of_another_model_are_refused_before_the_model_runs():
    model = tiny_llama(attn_implementation="sdpa")
    name = "model.layers.0.self_attn"
    fewer = visualizer.HeadMeans({name: torch.zeros(2, 16)}, False, "other")
    with pytest.raises(ValueError, match="another model"):
        with ablate(model, {name: [3]}, "mean", values=fewer):
            pass
    with pytest.raises(KeyError, match="model.layers.1.self_attn"):
        with ablate(model, {1: [0]}, "mean", values=fewer):
            pass
    with pytest.raises(ValueError, match="another model"):
        head_effects(model, torch.randint(0, 100, (1, 4)), _loss, "mean", values=fewer, layers=[0])
