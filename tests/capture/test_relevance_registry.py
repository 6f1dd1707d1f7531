"""``explain(method="attention_grad")`` and ``explain(method="attnlrp")`` across the timm and
transformers registries, against the references of ``relevance_reference`` (eager maps, plain
autograd, whole matrices; for attnlrp, the conservative rules by rewritten math).

The models are those of ``test_timm_registry`` and ``test_transformers_registry`` (tiny random
configs), built the same way. For each model whose attention modules all run one
``scaled_dot_product_attention`` call over the model's tokens, the scores of ``explain`` (fused
kernel kept, linear memory) must equal the reference's, the target being the sum of the
model's first output; the others are counted with the reason ``explain`` gives. On the same
models, ``attnlrp`` must equal the conservative reference (softmax detached, the norms' formulas
with 1/σ detached, gradient x input at the first block's input) where the reference knows every
norm of the model. The counts are printed at the end::

    PYTHONPATH=$PWD HF_HUB_OFFLINE=1 python -m pytest -q tests/capture/test_relevance_registry.py
"""

from __future__ import annotations

import collections
import contextlib
import os
import re
import warnings

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import test_timm_registry as timm_registry
import test_transformers_registry as hf_registry
from relevance_reference import attention_grad, attnlrp, first_blocks, unknown_norms

import visualizer
from visualizer import explain
from visualizer._adapters import find_targets
from visualizer._structure import Tokens

COUNTS: collections.Counter = collections.Counter()
REFUSED: collections.Counter = collections.Counter()
LRP: collections.Counter = collections.Counter()  # attnlrp, on the models attention_grad explained
LRP_REFUSED: collections.Counter = collections.Counter()


@pytest.fixture(scope="module", autouse=True)
def report(request):
    yield
    lines = [
        f"attention_grad: {COUNTS['models']} models; equal to the eager reference on {COUNTS['equal']} "
        f"({COUNTS['encoder-decoder']} encoder-decoder), largest difference "
        f"{COUNTS.get('max', 0) / 1e9:.2g} ({COUNTS['position given']} with position=0 given); "
        f"not explained: {sum(REFUSED.values())}"
    ]
    lines += [f"  not explained ({count}): {reason}" for reason, count in REFUSED.most_common()]
    lines.append(
        f"attnlrp: {LRP['models']} of those models; equal to the conservative reference on {LRP['equal']}, "
        f"largest difference {LRP.get('max', 0) / 1e9:.2g}; not compared: {sum(LRP_REFUSED.values())}"
    )
    lines += [f"  not compared ({count}): {reason}" for reason, count in LRP_REFUSED.most_common()]
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        for line in lines:
            (reporter.write_line if reporter else print)(line)


def _first(output) -> torch.Tensor:
    if isinstance(output, torch.Tensor):
        return output
    for value in output.values() if hasattr(output, "values") else output:
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            return value
    raise ValueError("no floating-point output")


def target(output) -> torch.Tensor:
    return _first(output).float().flatten(1).sum(-1)


def lrp_target(output) -> torch.Tensor:
    """A fixed random projection of the first output: with the norms' scales constant, the sum of a
    final LayerNorm's outputs has no gradient, so the sum used for attention_grad would give 0."""
    first = _first(output).float().flatten(1)
    generator = torch.Generator().manual_seed(0)
    return first @ torch.randn(first.shape[1], generator=generator)


def _check(model, inputs, run) -> None:
    COUNTS["models"] += 1
    targets, _ = find_targets(model, visualizer.get_local)
    eager = [t for t in targets if t.eager_because is not None]
    if not targets or eager:
        REFUSED[
            "attention computed eagerly (no kernel call to rebuild from)" if eager else "no attention"
        ] += 1
        pytest.skip("no kernel path")
    if any(not isinstance(t.layout, Tokens) for t in targets):
        REFUSED["windowed or channel attention"] += 1
        pytest.skip("not over tokens")
    torch.manual_seed(0)
    try:
        try:
            relevance = explain(model, inputs, target)
        except ValueError as error:
            if "position=" not in str(error):
                raise
            COUNTS["position given"] += 1  # no class token, not a causal LM: the first token, say
            torch.manual_seed(0)
            relevance = explain(model, inputs, target, position=0)
    except ValueError as error:  # what explain refuses, it says why
        REFUSED[str(error).split(":")[-1].strip()[:90]] += 1
        pytest.skip(str(error)[:200])
    torch.manual_seed(0)
    expected, decoder = attention_grad(model, run, target, relevance.position)
    difference = (relevance.scores - expected).abs().max().item()
    COUNTS["max"] = max(COUNTS.get("max", 0), int(difference * 1e9))
    torch.testing.assert_close(relevance.scores, expected.float(), rtol=1e-4, atol=1e-5)
    if decoder is not None:
        COUNTS["encoder-decoder"] += 1
        torch.testing.assert_close(relevance.decoder_scores, decoder.float(), rtol=1e-4, atol=1e-5)
    COUNTS["equal"] += 1
    _check_attnlrp(model, inputs, run, relevance.position)


def _check_attnlrp(model, inputs, run, position: int) -> None:
    """attnlrp on the same model, against the conservative reference (where it knows the norms)."""
    LRP["models"] += 1
    unknown = unknown_norms(model)
    try:
        torch.manual_seed(0)
        relevance = explain(model, inputs, lrp_target, method="attnlrp", position=position)
    except ValueError as error:  # a norm it cannot hold constant: it says which
        named = re.search(r"\((\w+)\) is a norm whose output is none", str(error))
        assert named, error
        LRP_REFUSED[f"{named.group(1)}: its output is none of the layer- or RMS-norm forms"] += 1
        return
    if unknown:
        LRP_REFUSED[f"a norm the reference does not know ({unknown[0].split(' ')[-1]})"] += 1
        return
    torch.manual_seed(0)
    unreproduced: list = []
    expected = attnlrp(model, run, lrp_target, first_blocks(model), unreproduced)
    if unreproduced:
        LRP_REFUSED["a norm whose formula the reference does not reproduce"] += 1
        return
    assert expected.abs().max() > 0, "a target whose scores are all 0 tests nothing"
    LRP["max"] = max(LRP.get("max", 0), int((relevance.scores - expected).abs().max().item() * 1e9))
    torch.testing.assert_close(relevance.scores, expected.float(), rtol=1e-4, atol=1e-5)
    LRP["equal"] += 1


@pytest.mark.parametrize("family", [*timm_registry.FAMILIES, *timm_registry.EXTRAS])
def test_timm_attention_grad(family):
    model, x = timm_registry.runnable(family, 1)
    _check(model, x, lambda m: m(x))


@pytest.mark.parametrize(
    ("model_type", "class_name"), hf_registry.ENTRIES, ids=[f"{t}-{n}" for t, n in hf_registry.ENTRIES]
)
def test_transformers_attention_grad(model_type, class_name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, inputs = hf_registry.runnable(model_type, class_name)
        try:
            with hf_registry.time_cap(3 * hf_registry.TIME_CAP):
                _check(model, {**inputs, "return_dict": True}, lambda m: m(**inputs, return_dict=True))
        except TimeoutError:
            REFUSED["over the time cap"] += 1
            pytest.skip("over the time cap")
