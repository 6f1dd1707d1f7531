"""Every base model of the installed transformers, captured and checked against its own eager attentions.

The way transformers tests itself: one case per entry of ``MODEL_MAPPING_NAMES``, each model
built from its config class with a tiny config (random weights) and fed inputs made from its
``main_input_name`` and forward signature. For each model that runs, ``capture_attention``
(lazy=None: maps rebuilt on demand where the module keeps its sdpa kernel) must leave the
model's output as it is without capture, and give exactly what the model itself returns with
eager ``output_attentions=True`` (atol 1e-5; query rows that see no key, zero when rebuilt,
left out), field by field and in order. Where the model's default output is not its eager
output (its sdpa computes something else: PaliGemma), the rebuilt maps follow the kernel and a
``lazy=False`` capture is compared with eager instead; those models are counted, and so are
rebuilt and eager layers. The declared structure must agree with the fields:
``encoder_attentions`` are encoder self-attention, ``decoder_attentions`` decoder
self-attention, ``cross_attentions`` cross-attention. Models whose tiny config cannot be built,
that need an input these tests cannot make, or whose eager attention returns no weights are
skipped with the reason. The counts are printed at the end (``-s`` not needed)::

    PYTHONPATH=$PWD HF_HUB_OFFLINE=1 python -m pytest -q tests/capture/test_transformers_registry.py
"""

from __future__ import annotations

import collections
import contextlib
import inspect
import signal
import warnings

import pytest
import torch

transformers = pytest.importorskip("transformers")

from registry_record import RegistryRecord  # noqa: E402
from transformers.models.auto.configuration_auto import CONFIG_MAPPING  # noqa: E402
from transformers.models.auto.modeling_auto import MODEL_MAPPING_NAMES  # noqa: E402

from visualizer import CaptureWarning, capture_attention  # noqa: E402
from visualizer._adapters._hf_fallback import FallbackPayload  # noqa: E402
from visualizer._adapters.hf_transformers import ADAPTER  # noqa: E402
from visualizer._structure import Tokens  # noqa: E402

#: Seconds one model may take (build, capture and reference); slower ones are skipped as such.
TIME_CAP = 5
BATCH, SEQ, DECODER_SEQ = 2, 7, 5
VOCAB = 99

#: The usual size attributes of transformers configs, and their tiny values.
TINY = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "intermediate_size": 37,
    "head_dim": 8,
    "vocab_size": VOCAB,
    "d_model": 32,
    "d_kv": 8,
    "d_ff": 37,
    "encoder_layers": 2,
    "decoder_layers": 2,
    "num_layers": 2,
    "num_decoder_layers": 2,
    "num_encoder_layers": 2,
    "encoder_attention_heads": 4,
    "decoder_attention_heads": 4,
    "num_heads": 4,
    "encoder_ffn_dim": 37,
    "decoder_ffn_dim": 37,
    "n_embd": 32,
    "n_layer": 2,
    "n_head": 4,
    "n_inner": 37,
    "n_positions": 64,
    "max_position_embeddings": 64,
    "max_source_positions": 16,
    "max_target_positions": 32,
    "embed_dim": 32,
    "projection_dim": 16,
    "image_size": 32,
    "patch_size": 8,
    "moe_intermediate_size": 16,
    "shared_expert_intermediate_size": 16,
    "num_experts": 4,
    "num_local_experts": 4,
    "n_routed_experts": 4,
    "num_experts_per_tok": 2,
    "mlp_ratio": 2.0,
    "num_mel_bins": 16,
    "kv_lora_rank": 8,
    "q_lora_rank": 16,
    "qk_rope_head_dim": 8,
    "qk_nope_head_dim": 8,
    "v_head_dim": 8,
    "vision_start_layer": 0,
}
#: List-valued sizes (one entry per stage), shrunk to two stages.
TINY_STAGES = {"depths": 1, "num_heads": 2, "hidden_sizes": 16, "embed_dims": 16, "dims": 16}
#: Ids in a tiny vocabulary that special tokens take.
SPECIAL = (
    "pad_token_id",
    "bos_token_id",
    "eos_token_id",
    "decoder_start_token_id",
    "sep_token_id",
    "cls_token_id",
)

#: Models known not to match, and why (each is a real limitation, reported as xfail).
KNOWN = {
    "PegasusXModel": "global-local block attention hands over a dict of two maps, not one token map",
}

STATS: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
REASONS: dict[str, dict[str, list[str]]] = collections.defaultdict(lambda: collections.defaultdict(list))


class Skip(Exception):
    """This model cannot be run here; the message says why (grouped in the summary)."""


def _entries():
    entries = []
    for model_type, names in MODEL_MAPPING_NAMES.items():
        for name in names if isinstance(names, (list, tuple)) else [names]:
            entries.append((model_type, name))
    return entries


ENTRIES = _entries()


def _tiny_kwargs(config_class, depth: int = 0) -> dict:
    """Tiny values for the size attributes ``config_class`` has, sub-configs included (as dicts)."""
    try:
        default = config_class()
    except Exception as exc:  # some configs need arguments
        raise Skip(f"config has no defaults ({type(exc).__name__})") from None
    kwargs = {}
    fields = vars(default)  # raw values: heterogeneous configs refuse some attributes
    for key, value in TINY.items():
        current = fields.get(key)
        if isinstance(current, (int, float)) and not isinstance(current, bool):
            kwargs[key] = type(current)(value)
    for key, value in TINY_STAGES.items():
        current = fields.get(key)
        if isinstance(current, list) and current and all(isinstance(v, int) for v in current):
            kwargs[key] = [value, value * 2 if key not in ("depths", "num_heads") else value][: len(current)]
    for key in SPECIAL:
        current = fields.get(key)
        if isinstance(current, int) and current >= 3:
            kwargs[key] = SPECIAL.index(key) % 3
    if depth < 3:
        for key, sub_class in (getattr(config_class, "sub_configs", None) or {}).items():
            sub = fields.get(key)
            if sub is None or not hasattr(sub, "to_dict"):
                continue
            sub_kwargs = _tiny_kwargs(type(sub), depth + 1)
            kwargs[key] = {**sub.to_dict(), **sub_kwargs}
    return kwargs


def build(model_type: str, class_name: str):
    config_class = CONFIG_MAPPING[model_type]
    kwargs = _tiny_kwargs(config_class)
    try:
        config = config_class(**kwargs)
    except Exception as exc:
        raise Skip(f"tiny config cannot be built ({type(exc).__name__})") from None
    model_class = getattr(transformers, class_name, None)
    if model_class is None:
        raise Skip("the mapping names a class transformers does not export")
    torch.manual_seed(0)
    try:
        model = model_class(config).eval()
    except Exception as exc:
        raise Skip(f"model cannot be built from a tiny config ({type(exc).__name__})") from None
    return model


def _configs(config, depth=0):
    yield config
    if depth < 3:
        for key in getattr(config, "sub_configs", None) or {}:
            sub = getattr(config, key, None)
            if sub is not None and hasattr(sub, "to_dict"):
                yield from _configs(sub, depth + 1)


def _first(config, *names):
    for sub in _configs(config):
        for name in names:
            value = getattr(sub, name, None)
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            if isinstance(value, (list, tuple)) and value and isinstance(value[0], int):
                return value[0]
    return None


def _token_ids(config, generator, shape):
    taken = set()
    for sub in _configs(config):
        for key, value in vars(sub).items():
            if key.endswith(("_token_id", "_token_index", "_id")) and isinstance(value, int):
                taken.add(value)
    vocab = min(v for v in (_first(config, "vocab_size") or VOCAB, VOCAB) if v)
    allowed = torch.tensor([i for i in range(3, vocab) if i not in taken])
    return allowed[torch.randint(0, len(allowed), shape, generator=generator)]


def make_inputs(model) -> dict:
    """Inputs for ``model`` from its main input name and forward signature; Skip if one cannot be made."""
    config = model.config
    generator = torch.Generator().manual_seed(1)
    parameters = inspect.signature(model.forward).parameters
    required = [
        name
        for name, p in parameters.items()
        if p.default is inspect.Parameter.empty and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
    ]
    if not isinstance(model.main_input_name, str):
        raise Skip("its main input is several inputs")
    if getattr(config, "attention_window", None) is not None:
        raise Skip("sliding-window band attention (attention_window): weights are not a token map")
    wanted = list(dict.fromkeys([model.main_input_name, *required]))
    if getattr(config, "is_encoder_decoder", False) and "decoder_input_ids" in parameters:
        wanted.append("decoder_input_ids")
    inputs = {}
    for name in wanted:
        if name == "input_ids":
            inputs[name] = _token_ids(config, generator, (BATCH, SEQ))
        elif name == "decoder_input_ids":
            inputs[name] = _token_ids(config, generator, (BATCH, DECODER_SEQ))
        elif name == "pixel_values":
            size = _first(config, "image_size") or 32
            channels = _first(config, "num_channels") or 3
            inputs[name] = torch.randn(BATCH, channels, size, size, generator=generator)
        elif (
            name == "input_features"
            and _first(config, "max_source_positions")
            and _first(config, "num_mel_bins")
        ):
            frames = 2 * _first(config, "max_source_positions")
            inputs[name] = torch.randn(BATCH, _first(config, "num_mel_bins"), frames, generator=generator)
        elif name == "input_values":
            inputs[name] = torch.randn(BATCH, 1600, generator=generator)
        else:
            raise Skip(f"needs an input these tests do not make ({name})")
    return inputs


def runnable(model_type: str, class_name: str):
    """``(model, inputs)``: the tiny model and inputs it runs on within the time cap; pytest.skip
    where it cannot be built or does not run."""
    try:
        with time_cap(TIME_CAP):
            model = build(model_type, class_name)
            inputs = make_inputs(model)
            with torch.no_grad():
                model(**inputs, return_dict=True)
    except Exception as exc:
        pytest.skip(f"does not run with a tiny config ({type(exc).__name__})")
    return model, inputs


def attention_fields(output, prefix="") -> list[tuple[str, tuple]]:
    """``[(field, tensors), ...]`` of every attention field of a model output, nested outputs included."""
    fields = []
    items = output.items() if hasattr(output, "items") else []
    for key, value in items:
        name = f"{prefix}{key}"
        if hasattr(value, "items"):
            fields.extend(attention_fields(value, f"{name}."))
        elif key.endswith("attentions") and isinstance(value, (tuple, list)):
            tensors = tuple(t for t in value if isinstance(t, torch.Tensor))
            if tensors:
                fields.append((name, tensors))
    return fields


@contextlib.contextmanager
def time_cap(seconds):
    def expired(signum, frame):
        raise TimeoutError(f"took more than {seconds}s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


#: What each field of transformers' outputs declares about the attentions in it.
DECLARED = {
    "encoder_attentions": ("encoder", "self"),
    "decoder_attentions": ("decoder", "self"),
    "cross_attentions": (None, "cross"),
    "attentions": (None, "self"),
}


def same_map(captured, reference) -> bool:
    """``captured`` equals ``reference`` (atol 1e-5) on every query row that sees some key.

    A query row that sees no key (every key masked) is all zeros in a rebuilt map, what the
    fused kernel computes, and uniform in eager's; such rows are left out, and a map must keep
    at least one row to compare."""
    if captured.shape != reference.shape:
        return False
    seen = captured.ne(0).any(dim=-1)
    if not bool(seen.any()):
        return bool(torch.allclose(captured, reference, atol=1e-5, rtol=0))
    return bool(torch.allclose(captured[seen], reference[seen], atol=1e-5, rtol=0))


def match(maps, fields) -> tuple[list[str], list[str]]:
    """Match each field's tensors to captured maps (in model order when every layer ran once).

    Returns the disagreements, and the captured maps the model does not return: Swin-family
    stages return only their last block's, DETR-like decoders no cross-attention, and other
    adapters capture ``nn.MultiheadAttention`` pooling heads; those are counted, not failed."""
    captured = [(info, call) for info in maps.infos for call in maps.calls(info.path)]
    ordered = all(info.calls == 1 for info in maps.infos)
    used: set[int] = set()
    problems = []
    for field, tensors in fields:
        start = 0
        leaf = field.rsplit(".", 1)[-1]
        for n, tensor in enumerate(tensors):
            found = None
            for i in range(start if ordered else 0, len(captured)):
                if i in used or captured[i][1].shape != tensor.shape:
                    continue
                if same_map(captured[i][1], tensor):
                    found = i
                    break
            if found is None:
                problems.append(f"{field}[{n}] {tuple(tensor.shape)}: no captured map equals it (in order)")
                continue
            used.add(found)
            start = found + 1
            role, kind = DECLARED.get(leaf, (None, None))
            info = captured[found][0]
            if kind is not None and info.kind != kind:
                problems.append(f"{field}[{n}] is {kind}-attention, {info.path} is declared {info.kind}")
            if role is not None and info.role != role:
                problems.append(f"{field}[{n}] is {role}, {info.path} is declared role {info.role}")
    unmatched = [captured[i][0] for i in range(len(captured)) if i not in used]
    return problems, [info.path for info in unmatched]


def output_tensors(output, prefix="") -> dict[str, torch.Tensor]:
    """The tensors of a model output other than its attentions, by field (nested outputs included)."""
    tensors = {}
    items = output.items() if hasattr(output, "items") else []
    for key, value in items:
        name = f"{prefix}{key}"
        if key.endswith("attentions"):
            continue
        if hasattr(value, "items"):
            tensors.update(output_tensors(value, f"{name}."))
        elif isinstance(value, torch.Tensor):
            tensors[name] = value
        elif isinstance(value, (tuple, list)):
            for n, item in enumerate(value):
                if isinstance(item, torch.Tensor):
                    tensors[f"{name}[{n}]"] = item
    return tensors


def outputs_differ(one, other) -> list[str]:
    """The fields in which two outputs of one model differ (atol 1e-5), compared where both have them."""
    first, second = output_tensors(one), output_tensors(other)
    common = [name for name in first if name in second]
    assert common, f"no output tensors to compare (fields {sorted(first)} and {sorted(second)})"
    return [
        name
        for name in common
        if first[name].shape != second[name].shape
        or not torch.allclose(first[name].float(), second[name].float(), atol=1e-5, rtol=0, equal_nan=True)
    ]


def run_captured(model, inputs, lazy):
    """(maps or the ValueError refusing the model, CaptureWarnings said, the model's output)."""
    output = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CaptureWarning)
        try:
            torch.manual_seed(0)
            with torch.no_grad(), capture_attention(model, lazy=lazy) as maps:
                output = model(**inputs, return_dict=True)
        except ValueError as exc:
            if "found no attention module" not in str(exc):
                raise
            maps = exc
    return maps, [str(w.message) for w in caught if issubclass(w.category, CaptureWarning)], output


def check(model_type: str, class_name: str) -> dict:
    """Run one model; raises Skip or AssertionError. Returns what the summary counts: ``path``
    ("table", "fallback" or "refused: why"), ``rebuilt`` and ``eager`` (layers of the default
    capture), ``eager_reasons`` and ``differ`` (its sdpa output is not its eager output).

    The default capture (lazy=None) must leave the model's output as it is without capture
    (the same implementation). Where the model's default output equals its eager output, the
    default maps (rebuilt or not) must equal eager ``output_attentions``; where it does not
    (the implementations compute different things, e.g. PaliGemma's sdpa mask), the rebuilt
    maps follow the kernel, and a ``lazy=False`` capture is the one compared with eager."""
    with time_cap(TIME_CAP):
        model = build(model_type, class_name)
        inputs = make_inputs(model)
        default = model.config._attn_implementation
        try:  # the reference first: a model that does not run at this size is skipped, not failed
            model.set_attn_implementation("eager")
            torch.manual_seed(0)
            with torch.no_grad():
                output = model(**inputs, output_attentions=True, return_dict=True)
            model.set_attn_implementation(default)
        except Exception as exc:
            raise Skip(f"does not run with a tiny config ({type(exc).__name__})") from None
        fields = attention_fields(output)
        if not fields:
            raise Skip("eager output_attentions returns no attention weights")
        shapes = {tuple(t.shape) for _, tensors in fields for t in tensors if t.dim() != 4}
        if shapes:
            raise Skip(
                "its eager attentions are not (batch, heads, queries, keys) maps (local/block attention)"
            )
        torch.manual_seed(0)
        with torch.no_grad():
            plain = model(**inputs, return_dict=True)  # the default implementation, no capture
        maps, said, captured = run_captured(model, inputs, None)
        refused = [message for message in said if "are not supported" in message]
        assert model.config._attn_implementation == default, (
            "capture left the attention implementation changed"
        )
        if isinstance(maps, Exception) or refused:
            reason = str(maps) if isinstance(maps, Exception) else refused[0]
            return {"path": "refused: " + reason[:300]}
        infos = maps.infos
        for position, info in enumerate(infos):  # a declared patch grid accounts for every key of its call
            for call in range(info.calls):
                layout = maps.layout(position, call)
                if isinstance(layout, Tokens) and layout.grid is not None:
                    STATS["layers"]["gridded"] += call == 0
                    keys = maps.shape(position, call)[-1]
                    assert layout.keys == keys, f"{info.path} call {call}: {layout} for {keys} keys"
        result = {
            "rebuilt": sum(info.rebuilt for info in infos),
            "eager": sum(not info.rebuilt for info in infos),
            "eager_reasons": sorted({info.eager_reason or "?" for info in infos if not info.rebuilt}),
            "differ": bool(outputs_differ(plain, output)),
            "changed": bool(outputs_differ(captured, plain)),
        }
        # A capture that computes a model's maps eagerly runs its eager attention: where that is
        # not what its sdpa computes (Falcon), the output is eager's. Anything else is a failure.
        assert not result["changed"] or (result["differ"] and not outputs_differ(captured, output)), (
            f"the capture changed the model's output ({default}): "
            + ", ".join(outputs_differ(captured, plain)[:4])
        )
        if result["differ"]:  # the rebuilt maps are the kernel's; eager ones are compared with eager
            maps, said, _ = run_captured(model, inputs, False)
            assert not isinstance(maps, Exception), f"lazy=False refuses what lazy=None captures: {maps}"
            refused = [message for message in said if "are not supported" in message]
    problems, others = match(maps, fields)
    problems += [message for message in said if message not in refused]
    if result["differ"]:
        problems = [f"(sdpa and eager differ; lazy=False) {problem}" for problem in problems]
    assert not problems, "; ".join(problems[:6])
    if others:
        REASONS["more than the model returns"][f"{len(others)} maps"].append(class_name)
    found = ADAPTER.find(model, list(model.named_modules()), {}, None)
    result["path"] = "fallback" if any(isinstance(t.payload, FallbackPayload) for t in found) else "table"
    return result


#: Per case (model type and class, as the test ids), for the docs' model matrix
#: (docs/registry/transformers.json).
FOUND = RegistryRecord("transformers")


@pytest.fixture(scope="module")
def summary(request):
    yield
    FOUND.finish(
        len(ENTRIES), {"transformers": transformers.__version__, "torch": torch.__version__.split("+")[0]}
    )
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    lines = [
        f"transformers registry: {sum(STATS['all'].values())} tried, "
        + ", ".join(f"{count} {what}" for what, count in sorted(STATS["all"].items())),
        f"  layers of the default capture: {STATS['layers']['rebuilt']} rebuilt, "
        f"{STATS['layers']['eager']} eager; sdpa and eager differ in "
        f"{STATS['models']['sdpa and eager differ']} models (their maps compared with lazy=False; "
        f"{STATS['models']['output changed']} of them with an output the capture changed to eager's)",
        f"  layers that declare a patch grid and prefix tokens: {STATS['layers']['gridded']}",
    ]
    for outcome in (
        "captured (fallback)",
        "sdpa and eager differ",
        "eager layers",
        "more than the model returns",
        "refused",
        "known failures",
        "skipped",
        "failed",
    ):
        for reason, names in sorted(REASONS[outcome].items(), key=lambda kv: -len(kv[1])):
            # every model that needed the fallback, or whose sdpa and eager differ
            shown = names if outcome not in ("skipped", "eager layers") else names[:8]
            lines.append(f"  {outcome} ({len(names)}): {reason}: {', '.join(shown)}")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        for line in lines:
            (reporter.write_line if reporter else print)(line)


@pytest.mark.parametrize(("model_type", "class_name"), ENTRIES, ids=[f"{t}-{n}" for t, n in ENTRIES])
def test_capture_equals_eager_output_attentions(model_type, class_name, summary):
    case = f"{model_type}-{class_name}"  # the test id: one class can serve several model types
    FOUND.add(case, {"model_type": model_type, "outcome": "failed"})  # until it says otherwise
    try:
        result = check(model_type, class_name)
    except Skip as exc:
        FOUND.add(case, {"model_type": model_type, "outcome": "skipped", "reason": str(exc)})
        STATS["all"]["skipped"] += 1
        REASONS["skipped"][str(exc)].append(class_name)
        pytest.skip(str(exc))
    except TimeoutError as exc:
        FOUND.add(case, {"model_type": model_type, "outcome": "slow", "reason": "slower than the time cap"})
        STATS["all"]["skipped"] += 1
        REASONS["skipped"][f"slower than the time cap ({exc})"].append(class_name)
        pytest.skip(f"slower than the per-model time cap: {exc}")
    except AssertionError as exc:
        if class_name in KNOWN:
            FOUND.add(
                case,
                {"model_type": model_type, "outcome": "known failure", "reason": KNOWN[class_name]},
            )
            STATS["all"]["known failures"] += 1
            REASONS["known failures"][KNOWN[class_name]].append(class_name)
            pytest.xfail(f"{KNOWN[class_name]}: {str(exc)[:200]}")
        STATS["all"]["failed"] += 1
        REASONS["failed"][type(exc).__name__].append(class_name)
        raise
    except BaseException as exc:
        STATS["all"]["failed"] += 1
        REASONS["failed"][type(exc).__name__].append(class_name)
        raise
    path = result["path"]
    FOUND.add(
        case,
        {
            "model_type": model_type,
            "outcome": "refused" if path.startswith("refused") else f"captured ({path})",
            "reason": path[len("refused: ") :] if path.startswith("refused") else "",
            "rebuilt": result.get("rebuilt", 0),
            "eager": result.get("eager", 0),
            "sdpa and eager differ": bool(result.get("differ")),
        },
    )
    if path.startswith("refused"):
        STATS["all"]["refused"] += 1
        REASONS["refused"][path[len("refused: ") :][:120]].append(class_name)
        return
    STATS["all"][f"captured ({path})"] += 1
    if path == "fallback":
        REASONS["captured (fallback)"]["no _can_record_outputs"].append(class_name)
    STATS["layers"]["rebuilt"] += result["rebuilt"]
    STATS["layers"]["eager"] += result["eager"]
    for reason in result["eager_reasons"]:
        REASONS["eager layers"][reason[:120]].append(class_name)
    if result["differ"]:
        STATS["models"]["sdpa and eager differ"] += 1
        REASONS["sdpa and eager differ"]["compared with lazy=False"].append(class_name)
    if result["changed"]:
        STATS["models"]["output changed"] += 1
        REASONS["sdpa and eager differ"]["the capture runs eager attention: its output is eager's"].append(
            class_name
        )
