"""Hugging Face transformers models (BERT, ViT, DINOv2, and any model that declares its attentions).

transformers 5.x defaults to ``sdpa``, which computes no weights: ``output_attentions=True``
then returns an empty tuple. A model running ``sdpa`` keeps it: each attention module's
kernel call is watched (``_sdpa``) and its queries, keys, mask and scale kept, as transformers
built them for sdpa, to rebuild the map on demand. Otherwise (``lazy=False``, or another
implementation): Every model declares which modules produce its attention
weights, and at which output position, in ``_can_record_outputs`` (the same table its
own ``output_attentions`` uses). During capture the model is switched to ``eager`` with
its own ``set_attn_implementation``, those modules' outputs are read by forward hooks,
and afterwards every config gets back the implementation it had. The padding mask is
built by the model for the implementation in use, so eager masks it correctly.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import re
from typing import Any

from visualizer._adapters import Refusal, Target, _sdpa, block_of
from visualizer._adapters._edit_points import forward_source, norms_between
from visualizer._adapters._events import AttentionCall, EditPoint
from visualizer._adapters._hf_fallback import FallbackPayload, Unit, find_fallback
from visualizer._adapters._hf_windows import WindowLayers, is_window_layer
from visualizer._adapters._switches import hold

__all__ = ["ADAPTER"]

ADAPTER_NAME = "transformers"


@dataclasses.dataclass(frozen=True)
class Payload:
    """Where a module's weights are in its output, and the PreTrainedModel whose table named it."""

    index: int | None  # None: a window layer, whose weights are found by their shape
    model: Any
    windowed: bool = False


class TransformersAdapter:
    """transformers models: switched to eager, weights read where ``_can_record_outputs`` declares them,
    else through the model's own ``output_attentions`` (see ``_hf_fallback``)."""

    name = ADAPTER_NAME
    framework = "transformers"
    supports = "transformers models (BERT, ViT, DINOv2 and others that declare their attentions)"
    order = 10  # before timm: a transformers model's modules are its own

    def find(self, model, modules, claimed, core) -> list:
        from transformers import PreTrainedModel

        available = dict(modules)
        everything = dict(model.named_modules())
        found_all: list = []
        for name, module in modules:
            if isinstance(module, PreTrainedModel) and not _inside_pretrained(
                name, available, PreTrainedModel
            ):
                found_all.extend(self._find_unit(module, name, available, claimed, everything))
        return found_all

    def _find_unit(self, module, name, available, claimed, everything) -> list:
        from transformers import PreTrainedModel

        found: list = []
        _walk(module, name, _specs(module), available, claimed, found, PreTrainedModel)
        found = _windowed(found, everything, available, claimed)
        roles = _roles(module, name)
        if not found:
            return _fallback(self.name, module, name, available, claimed, everything, roles)
        targets = []
        for path, m, kind, index in found:
            payload = Payload(index, module, windowed=is_window_layer(m))
            block = path if payload.windowed else _block(path, everything, module)
            target = Target(
                path, m, self.name, kind=kind, role=_role_of(path, roles), block=block, payload=payload
            )
            target.eager_because = _rebuild(module, m, payload)
            targets.append(target)
        return targets

    def attach(self, targets, recorder, core):
        return attach(targets, recorder)

    def edit_point(self, target, modules) -> EditPoint | str:
        kernel = isinstance(target.payload, Payload) and target.eager_because is None
        return edit_point(target, modules, kernel=kernel)


ADAPTER = TransformersAdapter()


#: The names transformers gives an attention module's output projection, across its families.
PROJECTIONS = (
    "o_proj",
    "out_proj",
    "c_proj",
    "dense",
    "o",
    "out_lin",
    "proj",
    "wo",
    "Wo",
    "out",
    "linear_out",
    "output_proj",
    "projection_layer",
)
#: Where a module's heads are declared, on the module or its config.
HEADS = ("num_heads", "num_attention_heads", "n_head", "n_heads")


def edit_point(target, modules: dict, *, kernel: bool) -> EditPoint | str:
    """The input of ``target``'s output projection, split into the heads declared on the module
    that holds it (or its config). The projection is a child named as in :data:`PROJECTIONS`, of
    the target or of the one child it wraps (T5's ``SelfAttention.o``); or an ``output.dense``
    of the target or, where the family keeps it in a sibling (BERT, ViT:
    ``attention.output.dense``), of its parent."""
    module = target.module
    name = f"{target.name} ({type(module).__name__})"
    parent = modules.get(target.name.rsplit(".", 1)[0]) if "." in target.name else None
    found = _projection(module) or _dense(module, parent)
    if found is None:
        inner = [child for child in module.children() if _projection(child) is not None]
        found = _projection(inner[0]) if len(inner) == 1 else None
    if found is None:
        children = ", ".join(n for n, _ in module.named_children()) or "none"
        return f"{name} has no output projection under a known name (its children: {children})"
    holder, attribute, projection = found
    if _uses_weights(type(holder), attribute):
        return (
            f"{name} applies {attribute}.weight itself (not as a module call), so its input cannot be edited"
        )
    between = norms_between(holder, attribute) if "." not in attribute else ""
    if between:
        return (
            f"{name} applies {between} to all heads together before its output projection, so one "
            "head's output cannot be changed on its own"
        )
    config = getattr(holder, "config", None) or getattr(module, "config", None)
    declared = [getattr(holder, n, None) for n in HEADS] + [getattr(config, n, None) for n in HEADS]
    heads = next((h for h in declared if isinstance(h, int) and not isinstance(h, bool) and h > 0), None)
    features = projection.weight.shape[0] if type(projection).__name__ == "Conv1D" else projection.in_features
    if heads is None or features % heads:
        return f"{name} declares no number of heads that divides its output projection's {features} inputs"
    return EditPoint(projection, heads, kernel=kernel)


def _projection(module):
    """(module, name, projection) for the first child of ``module`` named as in PROJECTIONS."""
    from torch import nn
    from transformers.pytorch_utils import Conv1D

    for attribute in PROJECTIONS:
        child = getattr(module, attribute, None)
        if isinstance(child, (nn.Linear, Conv1D)):
            return module, attribute, child
    return None


def _dense(module, parent):
    """(module, "output.dense", projection) where ``module`` or its parent keeps its projection in
    ``output.dense`` (BERT: the parent ``attention`` holds ``self`` and ``output``)."""
    from torch import nn

    # the parent counts only where it is the attention pair (self or attention, and output) and
    # not a layer whose `output` is the feed-forward's
    pair = parent is not None and module in (
        getattr(parent, "self", None),
        getattr(parent, "attention", None),
    )
    for holder in (module, parent) if pair else (module,):
        dense = getattr(getattr(holder, "output", None), "dense", None)
        if isinstance(dense, nn.Linear):
            return module, "output.dense", dense
    return None


@functools.cache
def _uses_weights(cls, attribute: str) -> bool:
    """Whether the methods of ``cls`` read ``self.<attribute>.weight`` themselves (WavLM hands its
    projections' weights to torch's multi_head_attention_forward, Bloom to ``F.linear``)."""
    sources = []
    for klass in cls.__mro__:
        if klass.__module__.startswith("torch."):
            break
        try:
            sources.append(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
    return any(f"self.{attribute}.weight" in source for source in sources)


def _windowed(found: list, everything: dict, available: dict, claimed: dict) -> list:
    """A module the table names that holds window layers (a Swin stage, which returns only its last
    block's weights) gives way to its window layers, each recorded on its own."""
    result = []
    for path, module, kind, index in found:
        inner = [
            (name, m)
            for name, m in everything.items()
            if name.startswith(path + ".") and is_window_layer(m) and name in available
        ]
        if not inner or is_window_layer(module):
            result.append((path, module, kind, index))
            continue
        claimed.pop(id(module), None)
        for name, m in inner:
            claimed[id(m)] = name
            result.append((name, m, kind, None))
    return result


def _fallback(adapter, module, name, available, claimed, everything, roles) -> list:
    """Targets through ``output_attentions`` for a model with no attention in its table, or a Refusal."""
    plan = find_fallback(module, name, available, claimed)
    if isinstance(plan, str):
        return [] if not _has_attention_classes(module) else [Refusal(name, module, adapter, plan)]
    config = getattr(module, "config", None)
    decoder_config = bool(
        getattr(config, "add_cross_attention", False) or getattr(config, "is_decoder", False)
    )
    targets, seen = [], {}
    for path, m in plan:
        role = _role_of(path, roles)
        block = _block(path, everything, module)
        position = seen.get(block, 0)
        seen[block] = position + 1
        cross = position > 0 and (role == "decoder" or (role is None and decoder_config))
        claimed[id(m)] = path
        targets.append(
            Target(
                path,
                m,
                adapter,
                kind="cross" if cross else "self",
                role=role,
                block=block,
                payload=FallbackPayload(module),
            )
        )
    return targets


def _rebuild(model, module, payload: Payload) -> str | None:
    """None where the module's map can be rebuilt from its sdpa kernel call; else why not."""
    if payload.windowed:
        return "window layers are recorded as they compute their maps"
    single = _one_kernel_call(type(module))
    if single is not None:
        return single
    config = getattr(module, "config", None) or model.config
    implementation = getattr(config, "_attn_implementation", None) or model.config._attn_implementation
    if implementation != "sdpa":
        return (
            f"the model runs attention implementation {implementation!r}, not 'sdpa', so its map is computed "
            "eagerly (load it with attn_implementation='sdpa' to keep the fused kernel)"
        )
    return None


_INTERFACE = re.compile(r"(\w+)\s*(?::[^=\n]+)?=\s*ALL_ATTENTION_FUNCTIONS\.get_interface\(")


@functools.cache
def _one_kernel_call(cls) -> str | None:
    """None where ``cls.forward`` calls the attention function it takes from transformers'
    ``ALL_ATTENTION_FUNCTIONS`` exactly once (so one kernel call defines its map), read from its
    source as transformers itself decides whether a model can switch implementations; else why not."""
    name = cls.__qualname__
    source = forward_source(cls)
    if not source:
        return f"the source of {name}.forward cannot be read, so its kernel calls are not known"
    found = _INTERFACE.search(source)
    if found is None:
        return f"{name}.forward does not take its attention function from ALL_ATTENTION_FUNCTIONS"
    calls = len(re.findall(rf"\b{re.escape(found.group(1))}\(", source))
    if calls != 1:
        return f"{name}.forward calls its attention function {calls} times (its map is not one softmax)"
    return None


def _has_attention_classes(module) -> bool:
    """Whether a model without a usable plan still looks like it has attention (so say why it is refused)."""
    return getattr(module, "_supports_attention_backend", False) or getattr(module, "_supports_sdpa", False)


def _roles(model, path: str) -> list[tuple[str, str]]:
    """``[(module path, role), ...]`` of an encoder-decoder model's encoder and decoder, as it declares
    them (``config.is_encoder_decoder``, ``get_encoder()``, ``get_decoder()``); empty otherwise."""
    if not getattr(model.config, "is_encoder_decoder", False):
        return []
    paths = {id(module): name for name, module in model.named_modules()}
    roles = []
    for role, getter in (("encoder", "get_encoder"), ("decoder", "get_decoder")):
        try:
            part = getattr(model, getter)()
        except (AttributeError, NotImplementedError, TypeError, ValueError):
            continue
        sub = paths.get(id(part))
        if part is not None and part is not model and sub is not None:
            roles.append((f"{path}.{sub}" if path and sub else sub or path, role))
    return roles


def _role_of(path: str, roles: list[tuple[str, str]]) -> str | None:
    for prefix, role in roles:
        if path == prefix or path.startswith(prefix + ".") or not prefix:
            return role
    return None


def _block(path: str, everything: dict, model) -> str:
    """The decoder or encoder layer a module is in: the class the model records ``hidden_states``
    from, else transformers' ``GradientCheckpointingLayer`` (every layer class), else a list element."""
    from transformers.modeling_layers import GradientCheckpointingLayer

    layer_classes: tuple = (GradientCheckpointingLayer,)
    spec = (getattr(model, "can_record_outputs", None) or {}).get("hidden_states")
    target_class = getattr(spec, "target_class", spec if isinstance(spec, type) else None)
    if isinstance(target_class, type):
        layer_classes = (target_class, GradientCheckpointingLayer)
    parts = path.split(".")
    for end in range(len(parts) - 1, 0, -1):  # a window layer (Swin block) is a block of its own
        ancestor = ".".join(parts[:end])
        if is_window_layer(everything.get(ancestor)):
            return ancestor
    for end in range(len(parts) - 1, 0, -1):
        ancestor = ".".join(parts[:end])
        if isinstance(everything.get(ancestor), layer_classes):
            return ancestor
    return block_of(path, everything)


def _inside_pretrained(name, available, PreTrainedModel) -> bool:
    """Whether a PreTrainedModel at ``name`` is nested in another (which walks it itself)."""
    parts = name.split(".") if name else []
    for i in range(len(parts)):
        ancestor = available.get(".".join(parts[:i]))
        if isinstance(ancestor, PreTrainedModel):
            return True
    return False


def _specs(model) -> list[tuple]:
    """``[(kind, target_class, class_name, layer_name, index), ...]`` for attention outputs."""
    specs = []
    for key, value in (getattr(model, "can_record_outputs", None) or {}).items():
        if "attention" not in key:
            continue
        kind = "cross" if "cross" in key else "self"
        for spec in value if isinstance(value, list) else [value]:
            if isinstance(spec, str):
                specs.append((kind, None, spec, None, 1))
            elif isinstance(spec, type):
                specs.append((kind, spec, None, None, 1))
            else:  # an OutputRecorder
                index = spec.index if spec.index is not None else 1
                specs.append((kind, spec.target_class, spec.class_name, spec.layer_name, index))
    return specs


def _walk(module, path, specs, available, claimed, targets, PreTrainedModel) -> None:
    """Like transformers' own hook installation: a nested model uses its own table."""
    for child_name, child in module.named_children():
        child_path = f"{path}.{child_name}" if path else child_name
        child_specs = _specs(child) if isinstance(child, PreTrainedModel) else specs
        _walk(child, child_path, child_specs, available, claimed, targets, PreTrainedModel)
    if path not in available or id(module) in claimed:
        return
    for kind, target_class, class_name, layer_name, index in specs:
        if target_class is not None and not isinstance(module, target_class):
            continue
        if target_class is None and not (class_name and path.endswith(class_name)):
            continue
        if layer_name is not None and f".{layer_name.strip('.')}." not in f".{path}.":
            continue
        targets.append((path, module, kind, index))
        claimed[id(module)] = path
        return


def attach(targets, recorder):
    from transformers import PreTrainedModel

    models = list({id(target.payload.model): target.payload.model for target in targets}.values())
    eager_models = [m for m in models if any(t.payload.model is m and not t.lazy for t in targets)]
    saved = _implementations(eager_models, PreTrainedModel)
    closers: list = []
    rebuilt: dict[int, Any] = {}  # id(target) -> the kernel call of its running forward, or the count
    try:
        for model in eager_models:
            if model.config._attn_implementation != "eager":
                model.set_attn_implementation("eager")
        roots = _roots(models)
        windows = WindowLayers(roots) if any(_has_windows(root) for root in roots) else None
        table = [target for target in targets if isinstance(target.payload, Payload)]
        for target in table:
            pre = target.module.register_forward_pre_hook(lambda m, a, t=target: recorder.ran(t))
            closers.append(pre.remove)
            if target.lazy:  # before the output hook, which then knows whether a recipe came
                closers.append(_sdpa.watch(target, target.module, _kernel_calls(rebuilt)))
            post = target.module.register_forward_hook(_hook(target, recorder, windows, rebuilt))
            closers.append(post.remove)
        for model in models:
            mine = [t for t in targets if isinstance(t.payload, FallbackPayload) and t.payload.model is model]
            if mine:
                closers.append(Unit(model, mine, recorder, windows).close)
        if windows is not None:  # after the targets' hooks: a window layer's layout outlives its own hook
            windows.install()
            closers.append(windows.close)
    except BaseException:
        _detach(closers, saved)
        raise
    return lambda: _detach(closers, saved)


def _roots(models) -> list:
    """The models that are not inside another of ``models``."""
    inner = {id(m) for model in models for m in model.modules() if m is not model}
    return [model for model in models if id(model) not in inner]


def _has_windows(model) -> bool:
    return any(is_window_layer(module) for module in model.modules())


def _implementations(models, PreTrainedModel) -> list:
    """A release function for every config of ``models``, each holding its attention implementation
    (restored when the last capture that switched it lets go; see ``_switches``)."""
    configs: dict = {}
    for model in models:
        for module in model.modules():
            if isinstance(module, PreTrainedModel):
                _collect(module.config, configs)
    return [hold(config, "_attn_implementation_internal") for config in configs.values()]


def _collect(config, configs) -> None:
    if id(config) in configs:
        return
    configs[id(config)] = config
    for key in getattr(config, "sub_configs", {}) or {}:
        sub = getattr(config, key, None)
        if sub is not None and hasattr(sub, "_attn_implementation_internal"):
            _collect(sub, configs)


def _detach(closers, saved) -> None:
    for close in reversed(closers):
        close()
    for release in saved:
        release()


def _kernel_calls(rebuilt: dict):
    """The watcher's report: the event of a forward that made exactly one kernel call, else the count."""

    def done(target, calls) -> None:
        rebuilt[id(target)] = calls[0] if len(calls) == 1 else len(calls)

    return done


def _hook(target, recorder, windows, rebuilt):
    index = target.payload.index
    windowed = target.payload.windowed

    def after(module, args, output):
        layout = windows.current() if windows is not None else None
        if target.lazy:
            kept = rebuilt.pop(id(target), 0)
            if not isinstance(kept, int):
                kept.layout = layout
                recorder.record(kept)
                return
            weights = (
                output[index] if isinstance(output, tuple) and -len(output) <= index < len(output) else None
            )
            if weights is not None:  # the model was switched to eager after all (a nested model)
                recorder.record(
                    AttentionCall(
                        target, "eager", layout, probabilities=weights, eager_because="its model ran eagerly"
                    )
                )
            else:
                recorder.missing(target, _sdpa.not_one_call(type(module).__name__, kept))
            return
        if windowed:
            weights = _window_weights(output, layout)
        else:
            weights = (
                output[index] if isinstance(output, tuple) and -len(output) <= index < len(output) else None
            )
        if weights is None:
            recorder.missing(target, _cause(module))
        else:
            recorder.record(AttentionCall(target, "eager", layout, probabilities=weights))

    return after


def _window_weights(output, layout):
    """A window layer's weights: the (batch x windows, heads, n, n) tensor of its output, n = window size."""
    if layout is None or not isinstance(output, tuple):
        return None
    n = layout.window[0] * layout.window[1]
    for value in output[1:]:
        if getattr(value, "dim", None) is not None and value.dim() == 4 and tuple(value.shape[-2:]) == (n, n):
            return value
    return None


def _cause(module) -> str:
    config = getattr(module, "config", None)
    implementation = getattr(config, "_attn_implementation", "unknown")
    return (
        f"{type(module).__name__} ran with attention implementation {implementation!r}, which computes no "
        "weights, and capture could not switch this model to 'eager' (its set_attn_implementation did not "
        "take effect). Fix: load it with attn_implementation='eager' "
        "(from_pretrained(..., attn_implementation='eager'))."
    )
