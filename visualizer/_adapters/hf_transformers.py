"""Hugging Face transformers models (BERT, ViT, DINOv2, and any model that declares its attentions).

transformers 5.x defaults to ``sdpa``, which computes no weights: ``output_attentions=True``
then returns an empty tuple. Every model declares which modules produce its attention
weights, and at which output position, in ``_can_record_outputs`` (the same table its
own ``output_attentions`` uses). During capture the model is switched to ``eager`` with
its own ``set_attn_implementation``, those modules' outputs are read by forward hooks,
and afterwards every config gets back the implementation it had. The padding mask is
built by the model for the implementation in use, so eager masks it correctly.
"""

from __future__ import annotations

import sys

from visualizer._adapters import Target

__all__ = ["attach", "find"]

ADAPTER = __name__.rsplit(".", 1)[-1]


def find(model, modules, claimed) -> list[Target]:
    transformers = sys.modules.get("transformers")
    if transformers is None:  # no transformers model can exist unless it was imported
        return []
    from transformers import PreTrainedModel

    available = dict(modules)
    targets: list[Target] = []
    for name, module in modules:
        if isinstance(module, PreTrainedModel) and not _inside_pretrained(name, available, PreTrainedModel):
            found = []
            _walk(module, name, _specs(module), available, claimed, found, PreTrainedModel)
            targets += [
                Target(path, m, kind, ADAPTER, detail=(index, module)) for path, m, kind, index in found
            ]
    return targets


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

    models = list({id(target.detail[1]): target.detail[1] for target in targets}.values())
    saved = _implementations(models, PreTrainedModel)
    handles = []
    try:
        for model in models:
            if model.config._attn_implementation != "eager":
                model.set_attn_implementation("eager")
        for target in targets:
            handles.append(target.module.register_forward_pre_hook(lambda m, a, t=target: recorder.ran(t)))
            handles.append(target.module.register_forward_hook(_hook(target, recorder, saved)))
    except BaseException:
        _detach(handles, saved)
        raise
    return lambda: _detach(handles, saved)


def _implementations(models, PreTrainedModel) -> list[tuple]:
    """``[(config, implementation), ...]`` for every config of ``models``, to restore later."""
    configs = {}
    for model in models:
        for module in model.modules():
            if isinstance(module, PreTrainedModel):
                _collect(module.config, configs)
    return [(config, config._attn_implementation_internal) for config in configs.values()]


def _collect(config, configs) -> None:
    if id(config) in configs:
        return
    configs[id(config)] = config
    for key in getattr(config, "sub_configs", {}) or {}:
        sub = getattr(config, key, None)
        if sub is not None and hasattr(sub, "_attn_implementation_internal"):
            _collect(sub, configs)


def _detach(handles, saved) -> None:
    for handle in handles:
        handle.remove()
    for config, implementation in saved:
        config._attn_implementation_internal = implementation


def _hook(target, recorder, saved):
    index = target.detail[0]

    def after(module, args, output):
        weights = output[index] if isinstance(output, tuple) and len(output) > index else None
        if weights is None:
            recorder.missing(target, _cause(module, saved))
        else:
            recorder.record(target, weights)

    return after


def _cause(module, saved) -> str:
    config = getattr(module, "config", None)
    implementation = getattr(config, "_attn_implementation", "unknown")
    return (
        f"{type(module).__name__} ran with attention implementation {implementation!r}, which computes no "
        "weights, and capture could not switch this model to 'eager' (its set_attn_implementation did not "
        "take effect). Fix: load it with attn_implementation='eager' "
        "(from_pretrained(..., attn_implementation='eager'))."
    )
