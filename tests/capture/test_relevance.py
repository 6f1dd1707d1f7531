"""explain and faithfulness, against references written here: Chefer et al.'s rules on eager maps
with plain autograd (``relevance_reference``), input x gradient by a hook of the test's own,
integrated gradients by captum called directly, rollout and raw attention from eager maps;
the model as it was after every call; one clear error per bad input."""

from __future__ import annotations

import copy
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from relevance_reference import attention_grad, attnlrp, first_block, first_blocks
from tiny_models import tiny_bert, tiny_encoder, tiny_llama, tiny_swin

import visualizer
from visualizer import explain, faithfulness
from visualizer.analysis import rollout

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _vit(**kwargs):
    import timm

    torch.manual_seed(0)
    kwargs = {"num_classes": 5, **kwargs}
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, depth=2, **kwargs).eval()


def _gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=100, n_embd=32, n_layer=2, n_head=4, n_positions=64))
    model.set_attn_implementation("sdpa")
    return model.eval()


def _bart():
    from transformers import BartConfig, BartForConditionalGeneration

    torch.manual_seed(0)
    config = BartConfig(
        vocab_size=100,
        d_model=32,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
    )
    return BartForConditionalGeneration(config).eval()


def _t5():
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(0)
    config = T5Config(
        vocab_size=100, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4, decoder_start_token_id=0
    )
    model = T5ForConditionalGeneration(config)
    model.set_attn_implementation("sdpa")
    return model.eval()


def _transformer():
    torch.manual_seed(0)
    return torch.nn.Transformer(16, 4, 2, 2, 32, dropout=0.0, batch_first=True).eval()


torch.manual_seed(7)
IDS = torch.randint(3, 100, (2, 9))
MASK = torch.ones(2, 9, dtype=torch.long)
MASK[1, :3] = 0
PIXELS = torch.randn(2, 3, 32, 32)
SRC, TGT = torch.randn(2, 6, 16), torch.randn(2, 5, 16)


def _hidden(out):
    return out.last_hidden_state[:, 0].sum(-1)


# name: (model, inputs, target, position given, how the reference runs the model, expected default position)
CASES = {
    "llama gqa": (lambda: tiny_llama(attn_implementation="sdpa"), IDS, 5, None, lambda m: m(IDS), 8),
    "gpt2": (_gpt2, IDS, 7, 4, lambda m: m(IDS), 4),
    "bert, padded": (
        tiny_bert,
        {"input_ids": IDS, "attention_mask": MASK},
        _hidden,
        None,
        lambda m: m(input_ids=IDS, attention_mask=MASK),
        0,
    ),
    "timm vit": (_vit, PIXELS, 3, None, lambda m: m(PIXELS), 0),
    "nn.TransformerEncoder": (tiny_encoder, SRC, lambda out: out[:, 2].sum(-1), 2, lambda m: m(SRC), 2),
    "nn.Transformer": (
        _transformer,
        (SRC, TGT),
        lambda out: out[:, -1].sum(-1),
        None,
        lambda m: m(SRC, TGT),
        4,
    ),
    "bart": (
        _bart,
        {"input_ids": IDS, "decoder_input_ids": IDS[:, :4]},
        9,
        None,
        lambda m: m(input_ids=IDS, decoder_input_ids=IDS[:, :4]),
        3,
    ),
    "t5": (
        _t5,
        {"input_ids": IDS, "decoder_input_ids": IDS[:, :4]},
        9,
        -2,
        lambda m: m(input_ids=IDS, decoder_input_ids=IDS[:, :4]),
        2,
    ),
}


def _state(model) -> dict:
    """What explain must leave as it was."""
    return {
        "training": model.training,
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "grads": [p.grad for p in model.parameters()],
        "fused": [getattr(m, "fused_attn", None) for m in model.modules()],
        "implementation": getattr(getattr(model, "config", None), "_attn_implementation", None),
        "hooks": sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules()),
        "sdpa": F.scaled_dot_product_attention,
        "fastpath": torch.backends.mha.get_fastpath_enabled(),
    }


@pytest.mark.parametrize("case", list(CASES))
def test_attention_grad_equals_the_eager_reference_with_the_kernel_kept(case):
    build, inputs, target, position, run, default = CASES[case]
    model = build()
    before = _state(model)
    relevance = explain(model, inputs, target, position=position)
    assert _state(model) == before
    assert relevance.position == default and relevance.scores.dtype == torch.float32
    assert relevance.scores.device.type == "cpu"
    target_fn = target if callable(target) else _logit(target, relevance.position)
    expected, decoder = attention_grad(copy.deepcopy(model), run, target_fn, relevance.position)
    torch.testing.assert_close(relevance.scores, expected.float(), rtol=1e-4, atol=1e-6)
    assert expected.abs().max() > 0
    if decoder is not None:
        torch.testing.assert_close(relevance.decoder_scores, decoder.float(), rtol=1e-4, atol=1e-6)
    else:  # one stack: the one-hot row of the position plus what each layer added
        assert relevance.contributions.shape == (len(relevance.layers), *relevance.scores.shape)
        onehot = torch.zeros_like(relevance.scores)
        onehot[:, relevance.position] = 1
        torch.testing.assert_close(relevance.scores, onehot + relevance.contributions.sum(0))


def _feature(position: int, index: int = 0):
    """One feature of one token's hidden state: a target a final LayerNorm does not make trivial
    (with the scale held constant, the sum over a LayerNorm's features has no gradient)."""

    def target(output):
        hidden = output if isinstance(output, torch.Tensor) else output.last_hidden_state
        return hidden[:, position, index]

    return target


def _gemma():  # RMS norms times 1 + weight, q/k norms, sliding windows
    sizes = {"hidden_size": 32, "intermediate_size": 64, "head_dim": 8, "sliding_window": 4}
    return tiny_llama("Gemma3ForCausalLM", "Gemma3TextConfig", **sizes)


def _qwen3():  # q/k norms
    return tiny_llama("Qwen3ForCausalLM", "Qwen3Config", hidden_size=32, intermediate_size=64, head_dim=8)


# attnlrp: the cases above (T5 aside: its attention is eager), with targets a final norm leaves
# non-trivial, and Gemma 3 (RMS norms times 1 + weight, q/k norms, sliding windows) and Qwen 3 (q/k norms)
LRP_CASES = {
    **{case: CASES[case] for case in ("llama gqa", "gpt2", "timm vit", "bart")},
    "bert, padded": (*CASES["bert, padded"][:2], _feature(0, 3), *CASES["bert, padded"][3:]),
    "nn.TransformerEncoder": (
        *CASES["nn.TransformerEncoder"][:2],
        _feature(2),
        *CASES["nn.TransformerEncoder"][3:],
    ),
    "nn.Transformer": (*CASES["nn.Transformer"][:2], _feature(-1), *CASES["nn.Transformer"][3:]),
    "gemma 3": (_gemma, IDS, 5, None, lambda m: m(IDS), 8),
    "qwen 3": (_qwen3, IDS, 5, None, lambda m: m(IDS), 8),
}


@pytest.mark.parametrize("case", list(LRP_CASES))
def test_attnlrp_equals_the_conservative_rules_written_here(case):
    """CP-LRP: gradient x input at the first block's input, with the attention probabilities and the
    norms' scales constant, equals the reference's rewritten model (the kernel on detached queries
    and keys; each norm's formula with 1/σ detached); the forward values are the model's own, and
    it differs from plain input x gradient (the rules change the numbers)."""
    build, inputs, target, position, run, default = LRP_CASES[case]
    model = build()
    before = _state(model)
    relevance = explain(model, inputs, target, method="attnlrp", position=position)
    assert _state(model) == before
    assert relevance.position == default
    target_fn = target if callable(target) else _logit(target, relevance.position)
    with torch.no_grad():
        torch.testing.assert_close(relevance.outputs, target_fn(run(model)).float())
    twin, unreproduced = copy.deepcopy(model), []
    expected = attnlrp(twin, run, target_fn, first_blocks(twin), unreproduced)
    assert not unreproduced
    torch.testing.assert_close(relevance.scores, expected.float(), rtol=1e-4, atol=1e-6)
    assert expected.abs().max() > 0
    plain = explain(model, inputs, target, method="input_x_gradient", position=position)
    assert (plain.scores - relevance.scores).abs().max() > 1e-3 * relevance.scores.abs().max()
    if relevance.decoder_scores is not None:
        decoder = next(name for name in relevance.layers if "decoder" in name)
        expected = attnlrp(twin, run, target_fn, first_block(twin, decoder))
        torch.testing.assert_close(relevance.decoder_scores, expected.float(), rtol=1e-4, atol=1e-6)


class _ScaleNorm(torch.nn.Module):
    """x / ‖x‖ · g: a norm that is neither a layer norm nor an RMS norm."""

    def __init__(self) -> None:
        super().__init__()
        self.g = torch.nn.Parameter(torch.tensor(3.0))  # (4 = √16 would make it an RMS norm)

    def forward(self, x):
        return x / x.norm(dim=-1, keepdim=True) * self.g


def test_attnlrp_refuses_what_it_cannot_hold_constant_naming_it():
    model = _t5()  # eager attention: refused before the model runs
    runs = []
    handle = model.register_forward_pre_hook(lambda m, a: runs.append(1))
    with pytest.raises(
        ValueError, match=r"6 of T5ForConditionalGeneration's attention layers .*encoder\.block\.0"
    ):
        explain(model, {"input_ids": IDS, "decoder_input_ids": IDS[:, :4]}, 9, method="attnlrp")
    handle.remove()
    assert not runs
    vit = _vit()
    for block in vit.blocks:
        block.attn.fused_attn = False
    with pytest.raises(ValueError, match=r"blocks\.0\.attn \(Attention\.fused_attn is off"):
        explain(vit, PIXELS, 3, method="attnlrp")
    encoder = tiny_encoder()
    encoder.layers[1].norm2 = _ScaleNorm()
    before = _state(encoder)
    with pytest.raises(ValueError, match=r"layers\.1\.norm2 \(_ScaleNorm\) is a norm whose output is none"):
        explain(encoder, SRC, _feature(2), method="attnlrp", position=2)
    assert _state(encoder) == before


def _logit(index, position):
    def target(output):
        logits = output if isinstance(output, torch.Tensor) else output.logits
        return logits[:, index] if logits.dim() == 2 else logits[:, position, index]

    return target


@pytest.mark.parametrize("case", ["llama gqa", "bart"])
def test_a_float64_default_dtype_changes_nothing(case):
    """The relevance is accumulated in float32 whatever torch's default dtype (a model built in
    float32 before set_default_dtype(float64) is explained as before)."""
    build, inputs, target, position, _, _ = CASES[case]
    model = build()
    expected = explain(model, inputs, target, position=position)
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        relevance = explain(model, inputs, target, position=position)
    finally:
        torch.set_default_dtype(before)
    torch.testing.assert_close(relevance.scores, expected.scores)


def test_the_vit_scores_carry_the_declared_patch_grid():
    relevance = explain(_vit(), PIXELS, 3)
    assert relevance.layout.prefix == 1 and relevance.layout.grid == (2, 2)
    assert relevance.position_rule == "the class token"
    np.testing.assert_array_equal(relevance.patches(1), relevance.scores[1, 1:].reshape(2, 2).numpy())


def test_input_x_gradient_equals_a_hook_of_the_tests_own():
    model = tiny_llama(attn_implementation="sdpa")
    kept = []

    def leaf(module, args):
        x = args[0].detach().requires_grad_(True)
        kept.append(x)
        return (x, *args[1:])

    handle = model.model.layers[0].register_forward_pre_hook(leaf)
    logits = model(IDS).logits[:, -1, 5]
    (grad,) = torch.autograd.grad(logits.sum(), kept)
    handle.remove()
    relevance = explain(model, IDS, 5, method="input_x_gradient")
    torch.testing.assert_close(relevance.scores, (grad * kept[0]).sum(-1).detach())
    assert all(p.grad is None for p in model.parameters())


def test_integrated_gradients_equal_captum_called_directly():
    from captum.attr import IntegratedGradients, LayerIntegratedGradients

    vit = _vit()
    relevance = explain(vit, PIXELS, 3, method="integrated_gradients", steps=16)
    pixels = IntegratedGradients(lambda x: vit(x)[:, 3]).attribute(PIXELS, n_steps=16)
    per_patch = pixels.sum(1).reshape(2, 2, 16, 2, 16).sum((2, 4)).reshape(2, 4)
    torch.testing.assert_close(relevance.scores[:, 1:], per_patch.float())
    assert (relevance.scores[:, 0] == 0).all()  # the class token has no pixels
    model = tiny_llama(attn_implementation="sdpa")
    relevance = explain(model, IDS, 5, method="integrated_gradients", steps=16)
    layer = LayerIntegratedGradients(lambda ids: model(ids).logits[:, -1, 5], model.get_input_embeddings())
    bos = torch.full_like(IDS, model.config.bos_token_id)
    torch.testing.assert_close(
        relevance.scores, layer.attribute(IDS, baselines=bos, n_steps=16).sum(-1).float()
    )


def test_rollout_and_raw_attention_from_eager_maps():
    model = tiny_bert()
    eager = copy.deepcopy(model)
    eager.set_attn_implementation("eager")
    with torch.no_grad():
        maps = eager(IDS, output_attentions=True).attentions
    expected = torch.as_tensor(np.asarray(rollout(list(maps))))[:, 0]
    torch.testing.assert_close(explain(model, IDS, _hidden, method="rollout").scores, expected.float())
    attention = explain(model, IDS, _hidden, method="attention", position=3)
    torch.testing.assert_close(attention.scores, maps[-1].mean(1)[:, 3])


def test_frozen_parameters_work_and_no_parameter_gets_a_gradient():
    model = _vit()
    reference = explain(model, PIXELS, 3).scores
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    torch.testing.assert_close(explain(model, PIXELS, 3).scores, reference)
    assert not any(p.requires_grad for p in model.parameters())


def test_the_model_is_as_before_after_an_exception():
    model = tiny_llama(attn_implementation="sdpa")
    before = _state(model)

    def broken(output):
        raise RuntimeError("in the target")

    with pytest.raises(RuntimeError, match="in the target"):
        explain(model, IDS, broken)
    assert _state(model) == before
    model.train()
    for layer in model.model.layers:
        layer.self_attn.attention_dropout = 0.5
    with pytest.raises(ValueError, match="model.eval"):
        explain(model, IDS, 5)
    assert model.training
    model.eval()
    assert _state(model) == before


BAD = [
    (lambda: tiny_llama(), IDS, 100, {}, IndexError, r"100 logits \(valid: 0\.\.99\)"),
    (_vit, PIXELS, 5, {}, IndexError, r"5 logits"),
    (lambda: tiny_llama(), IDS, -1, {}, IndexError, "at least 0"),
    (lambda: tiny_llama(), IDS, 1.5, {}, TypeError, "int .a logit index. or a callable"),
    (lambda: tiny_llama(), IDS, 5, {"position": 9}, IndexError, r"9 tokens \(valid: 0\.\.8"),
    (lambda: tiny_llama(), IDS, 5, {"position": "last"}, TypeError, "position"),
    (lambda: tiny_llama(), IDS, 5, {"method": "lrp"}, ValueError, "attention_grad, attnlrp, rollout"),
    (lambda: tiny_llama(), IDS, 5, {"steps": 0}, ValueError, "steps"),
    (tiny_bert, IDS, 3, {}, ValueError, "no logits"),
    (lambda: _vit(num_classes=0), PIXELS, 0, {}, ValueError, "no logits"),
]


@pytest.mark.parametrize(("build", "inputs", "target", "kwargs", "error", "message"), BAD)
def test_bad_inputs_are_one_clear_error_before_the_model_runs(build, inputs, target, kwargs, error, message):
    model = build()
    runs = []
    handle = model.register_forward_pre_hook(lambda m, a: runs.append(1))
    with pytest.raises(error, match=message):
        explain(model, inputs, target, **kwargs)
    handle.remove()
    assert not runs


def test_eager_layers_are_followed_through_their_own_maps():
    """timm's unfused path computes the map; its gradient comes from autograd on it (quadratic, as
    the model's own path is) and gives the fused path's scores."""
    fused = explain(_vit(), PIXELS, 3)
    model = _vit()
    for block in model.blocks:
        block.attn.fused_attn = False
    torch.testing.assert_close(explain(model, PIXELS, 3).scores, fused.scores, rtol=1e-4, atol=1e-6)


class _Detached(torch.nn.Module):
    """Attention whose map is cut from the graph: it cannot be differentiated."""

    def __init__(self) -> None:
        super().__init__()
        self.attn = torch.nn.MultiheadAttention(16, 4, batch_first=True)

    def forward(self, x):
        with torch.no_grad():
            _, weights = self.attn(x, x, x, average_attn_weights=False)
        return weights.mean(1) @ x


def test_layers_that_cannot_be_followed_are_named():
    with pytest.raises(ValueError, match="no gradient to follow.*cannot be differentiated"):
        explain(_Detached(), SRC, lambda out: out[:, 0].sum(-1), position=0)
    with pytest.raises(ValueError, match="windowed"):
        explain(tiny_swin(), torch.randn(1, 3, 56, 56), 1)
    with pytest.raises(ValueError, match="position="):
        explain(tiny_encoder(), SRC, lambda out: out.sum((1, 2)))
    with pytest.raises(ValueError, match="one scalar per batch item"):
        explain(tiny_llama(), IDS, lambda out: out.logits)


# -- faithfulness -------------------------------------------------------------------------------


def test_faithfulness_curves_start_clean_and_meet_when_everything_is_removed():
    model = tiny_llama(attn_implementation="sdpa")
    relevance = explain(model, IDS, 5)
    check = faithfulness(model, IDS, relevance, 5, steps=4, random_orders=2)
    with torch.no_grad():
        clean = model(IDS).logits[:, -1, 5]
        emptied = IDS.clone()
        emptied[:, 1:-1] = model.config.bos_token_id  # every token but BOS and the query
        empty = model(emptied).logits[:, -1, 5]
    assert check.kept == (0, 8) and check.baseline == "token id 1"
    np.testing.assert_allclose(check.fractions, [0, 0.25, 0.5, 0.75, 1])
    for name in ("most_relevant_first", "least_relevant_first", "random"):
        assert check.curves[name].shape == (2, 5)
        np.testing.assert_allclose(check.curves[name][:, 0], clean.numpy(), rtol=1e-5)
        np.testing.assert_allclose(check.curves[name][:, -1], empty.numpy(), rtol=1e-5)
        values = check.curves[name]
        manual = ((values[:, 1:] + values[:, :-1]) / 2 * 0.25).sum(1)
        np.testing.assert_allclose(check.auc[name], manual)
    np.testing.assert_allclose(
        check.difference, check.auc["least_relevant_first"] - check.auc["most_relevant_first"]
    )
    # the first step removes the most relevant tokens, by hand
    order = relevance.scores.clone()
    order[:, [0, 8]] = -np.inf
    first = order.argsort(1, descending=True)[:, :2]
    removed = IDS.clone()
    removed[torch.arange(2)[:, None], first] = model.config.bos_token_id
    with torch.no_grad():
        step = model(removed).logits[:, -1, 5]
    np.testing.assert_allclose(check.curves["most_relevant_first"][:, 1], step.numpy(), rtol=1e-5)


def test_faithfulness_on_images_replaces_patches_by_the_mean_patch():
    vit = _vit()
    relevance = explain(vit, PIXELS, 3)
    check = faithfulness(vit, PIXELS, relevance, 3, steps=4)
    assert check.kept == (0,) and check.baseline == "the image's mean patch"
    patches = PIXELS.reshape(2, 3, 2, 16, 2, 16)
    mean = patches.mean((2, 4), keepdim=True).expand_as(patches).reshape(2, 3, 32, 32)
    with torch.no_grad():
        emptied = vit(mean)[:, 3]
    np.testing.assert_allclose(
        check.curves["most_relevant_first"][:, -1], emptied.numpy(), rtol=1e-5, atol=1e-6
    )
    figure = check.plot()
    assert len(figure.axes[0].lines) == 3 and "AUC" in figure.axes[0].get_legend().get_texts()[0].get_text()


def test_faithfulness_rejects_bad_inputs():
    model = tiny_llama(attn_implementation="sdpa")
    relevance = explain(model, IDS, 5)
    with pytest.raises(ValueError, match="steps"):
        faithfulness(model, IDS, relevance, 5, steps=0)
    with pytest.raises(ValueError, match="position="):
        faithfulness(model, IDS, relevance.scores, 5)
    with pytest.raises(ValueError, match="9 tokens"):
        faithfulness(model, IDS[:, :7], relevance, 5)
    with pytest.raises(ValueError, match="NaN"):
        faithfulness(model, IDS, torch.full((2, 9), float("nan")), 5, position=-1)
    with pytest.raises(TypeError, match="token id"):
        faithfulness(model, IDS, relevance, 5, baseline=0.5)


def test_public_names():
    assert visualizer.explain is explain and visualizer.Relevance.__module__ == "visualizer.relevance"


def test_explain_inside_an_ablation_explains_the_ablated_model():
    """Nesting: an explanation inside ablate() equals the explanation of a copy whose output projection
    ignores the head, and an ablation opened inside nothing else is gone afterwards."""
    model = tiny_llama(attn_implementation="sdpa")
    reference = copy.deepcopy(model)
    with torch.no_grad():
        reference.model.layers[0].self_attn.o_proj.weight[:, 16:32] = 0  # head 1 of 4, head dim 16
    with visualizer.ablate(model, {0: [1]}):
        inside = explain(model, IDS, 5)
    expected = explain(reference, IDS, 5)
    torch.testing.assert_close(inside.scores, expected.scores, rtol=1e-4, atol=1e-6)
    assert (explain(model, IDS, 5).scores - inside.scores).abs().max() > 1e-6
