"""Edit points across the timm and transformers registries: every attention module has one or a reason.

The models are those of ``test_timm_registry`` (one small variant per family) and
``test_transformers_registry`` (every base model of ``MODEL_MAPPING_NAMES``, tiny configs),
built the same way. For each model, every attention module the capture finds must have an
edit point (its output projection and heads) or a reason. A Seam with an identity editor on
every module with an edit point must then:

- see at least one event from every such module that ran, so the projection found is the one
  the module calls; from every module whose default path is one sdpa call, an event of the
  kernel (with its queries, keys and values);
- leave the model's output bit-identical (an editor that returns a copy of what it got);
- through the public ``visualizer.ablate``, zero-ablating the last head of every such module
  give the output of an independent reference: a copy of the model whose output projections
  ignore that head (the weight's input columns set to zero; rows for GPT-2's ``Conv1D``;
  ``out_proj`` for ``nn.MultiheadAttention``), to 1e-5.

For each kernel event, the kernel's own output, recomputed here from the event's queries, keys
and values with the original ``scaled_dot_product_attention``, is compared with what the
projection received: equal (the kernel's output is the edit point) or not (a gate or norm sits
between; the edit point is still the projection's input). The counts are printed at the end::

    PYTHONPATH=$PWD HF_HUB_OFFLINE=1 python -m pytest -q tests/capture/test_seam_registry.py
"""

from __future__ import annotations

import collections
import contextlib
import copy
import os
import re
import warnings

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import test_timm_registry as timm_registry
import test_transformers_registry as hf_registry

import visualizer
from visualizer._adapters import adapters, find_targets
from visualizer._adapters._seam import Seam

COUNTS: collections.Counter = collections.Counter()
REFUSED: collections.Counter = collections.Counter()  # (framework, reason's shape) -> modules
BETWEEN: set = set()  # classes whose kernel output is not what their projection receives
MAX_DIFF = [0.0]  # the largest difference between ablate and its reference


class Copying:
    """An identity editor that returns a copy of what it got, keeping every event."""

    def __init__(self) -> None:
        self.events: list = []

    def edit(self, call):
        self.events.append(call)
        return call.output.clone()


@pytest.fixture(scope="module", autouse=True)
def report(request):
    yield
    lines = [
        f"edit points: {COUNTS['models']} models, {COUNTS['targets']} attention modules; "
        f"{COUNTS['points']} with an edit point ({COUNTS['kernel points']} on the sdpa kernel, where "
        f"gradient taps may detach queries and keys; all take editors and gradient taps), "
        f"{COUNTS['refused']} refused; {COUNTS['ran']} ran under the seam",
        f"  kernel output = projection input in {COUNTS['same']} calls, something between in "
        f"{COUNTS['between']} ({', '.join(sorted(BETWEEN)) or 'none'})",
        f"  identity editor: output bit-identical on {COUNTS['identical']} models, within 1e-6 on "
        f"{COUNTS['close']}",
        f"  zero-ablation of one head per module = zeroed-projection reference (1e-5): {COUNTS['ablated']} "
        f"models, {COUNTS['ablated modules']} modules; largest difference {MAX_DIFF[0]:.2g}",
    ]
    lines += [
        f"  refused ({framework}, {count}): {reason}" for (framework, reason), count in REFUSED.most_common()
    ]
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        for line in lines:
            (reporter.write_line if reporter else print)(line)


def _kernel_output(call):
    """What the kernel returned for this event, recomputed with the original function, per head."""
    sdpa = torch.nn.functional.scaled_dot_product_attention
    sdpa = getattr(sdpa, "__wrapped__", sdpa)
    mask = call.masks[0] if call.masks else None
    out = sdpa(
        call.query,
        call.key,
        call.value,
        attn_mask=mask,
        is_causal=call.is_causal,
        scale=call.scale,
        enable_gqa=call.enable_gqa,
    )
    if call.packed:
        out = out.reshape(out.shape[0], call.heads, 1, out.shape[-1])
    return out


def _check(framework: str, model, run) -> None:
    """``run(model)`` runs a model on the inputs and returns its output (a tensor or a ModelOutput)."""
    COUNTS["models"] += 1
    targets, _ = find_targets(model, visualizer.get_local)
    by_adapter = {adapter.name: adapter for adapter in adapters(available_only=False)}
    modules = dict(model.named_modules())
    points = {}
    for target in targets:
        COUNTS["targets"] += 1
        point = by_adapter[target.adapter].edit_point(target, modules)
        if isinstance(point, str):
            assert point, f"{target.name}: refused with no reason"
            COUNTS["refused"] += 1
            REFUSED[framework, re.sub(r"^\S+ \((\w+)\)", r"\1", point)] += 1
        else:
            points[target.name] = (target, point)
    if not points:
        return
    COUNTS["points"] += len(points)
    COUNTS["kernel points"] += sum(point.kernel for _, point in points.values())
    torch.manual_seed(0)  # (models that draw at random in their forward: ViTMAE's masking)
    with torch.no_grad():
        plain = run(model)
    ran: collections.Counter = collections.Counter()
    handles = [
        target.module.register_forward_pre_hook(lambda m, a, name=name: ran.update([name]))
        for name, (target, _) in points.items()
    ]
    editor = Copying()
    torch.manual_seed(0)
    try:
        with torch.no_grad(), Seam(model, editors=[editor], modules=list(points)):
            edited = run(model)
    finally:
        for handle in handles:
            handle.remove()
    seen = collections.defaultdict(list)
    for call in editor.events:
        seen[call.target.name].append(call)
    for name in ran:
        target, point = points[name]
        COUNTS["ran"] += 1
        assert seen[name], f"{name} ({type(target.module).__name__}) ran, but its projection never did"
        if point.kernel:
            kernel = [call for call in seen[name] if call.source == "kernel"]
            assert kernel, f"{name}: no kernel event although its default path is one sdpa call"
            for call in kernel:
                with torch.no_grad():
                    expected = _kernel_output(call)
                if expected.shape == call.output.shape and torch.allclose(expected, call.output, atol=1e-6):
                    COUNTS["same"] += 1
                else:
                    COUNTS["between"] += 1
                    BETWEEN.add(type(target.module).__name__)
    before, after = _tensors(plain), _tensors(edited)
    assert before.keys() == after.keys() and before, "no outputs to compare"
    if ran:
        _check_ablation(model, run, points, ran)
    if all(torch.equal(before[k], after[k]) for k in before):
        COUNTS["identical"] += 1
        return
    differ = [
        k
        for k in before
        if before[k].shape != after[k].shape
        or not torch.allclose(before[k].float(), after[k].float(), atol=1e-6, rtol=0, equal_nan=True)
    ]
    assert not differ, f"an identity editor changed the output beyond 1e-6: {differ[:4]}"
    COUNTS["close"] += 1


def _check_ablation(model, run, points: dict, ran) -> None:
    """``visualizer.ablate`` of each module's last head equals a copy of the model whose output
    projections ignore that head (written here from the weights, not through the seam)."""
    names = {id(module): name for name, module in model.named_modules()}
    reference = copy.deepcopy(model)
    modules = dict(reference.named_modules())
    for target, point in points.values():
        head = point.heads - 1
        projection = point.projection if point.projection is not None else target.module.out_proj
        weight = modules[names[id(projection)]].weight
        transposed = type(projection).__name__ == "Conv1D"  # (in, out): the rows read the input
        width = weight.shape[0 if transposed else 1] // point.heads
        with torch.no_grad():
            if transposed:
                weight[head * width : (head + 1) * width] = 0
            else:
                weight[:, head * width : (head + 1) * width] = 0
    torch.manual_seed(0)
    with torch.no_grad():
        expected = _tensors(run(reference))
    torch.manual_seed(0)
    with (
        torch.no_grad(),
        visualizer.ablate(model, {name: [point.heads - 1] for name, (_, point) in points.items()}),
    ):
        ablated = _tensors(run(model))
    assert expected.keys() == ablated.keys()
    for key in expected:
        difference = (expected[key].float() - ablated[key].float()).abs().nan_to_num().max().item()
        MAX_DIFF[0] = max(MAX_DIFF[0], difference)
        assert torch.allclose(
            expected[key].float(), ablated[key].float(), atol=1e-5, rtol=1e-5, equal_nan=True
        ), f"{key}: ablate differs from the zeroed-projection reference by {difference:.3g}"
    COUNTS["ablated"] += 1
    COUNTS["ablated modules"] += len(ran)


def _tensors(output) -> dict:
    return {"output": output} if isinstance(output, torch.Tensor) else hf_registry.output_tensors(output)


@pytest.mark.parametrize("family", [*timm_registry.FAMILIES, *timm_registry.EXTRAS])
def test_timm_edit_points(family):
    model, x = timm_registry.runnable(family, 2)
    _check("timm", model, lambda m: m(x))


@pytest.mark.parametrize(
    ("model_type", "class_name"), hf_registry.ENTRIES, ids=[f"{t}-{n}" for t, n in hf_registry.ENTRIES]
)
def test_transformers_edit_points(model_type, class_name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, inputs = hf_registry.runnable(model_type, class_name)
        with hf_registry.time_cap(3 * hf_registry.TIME_CAP):
            _check("transformers", model, lambda m: m(**inputs, return_dict=True))
