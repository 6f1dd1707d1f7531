"""Run lxt's CP-LRP / AttnLRP on one tiny model, inside lxt's own virtual environment.

    benchmarks/.peers/lxt/bin/python benchmarks/peer_lxt_worker.py FOLDER MODEL MODE OUT.npz

Started by ``benchmarks/peer_lxt.py`` (which saves the models and reads the results), once per
(model, mode): lxt patches classes and module globals for the whole process and has no undo,
so every mode gets a fresh interpreter.

FOLDER holds what the harness saved: ``FOLDER/MODEL/`` (config and weights) and
``FOLDER/MODEL.npz`` (the inputs, ``target``, ``position``). MODEL is one of ``llama``
(LlamaForCausalLM), ``bert`` (BertForSequenceClassification), ``vit_hf``
(ViTForImageClassification), ``vit_tv`` (torchvision's VisionTransformer, the only ViT lxt
ships a patch map for). MODE:

- ``grad``: nothing patched, plain gradient x input;
- ``core``: CP-LRP as Ali et al. (ICML 2022) define it, built from lxt's own patch functions:
  the attention's queries and keys detached (``patch_cp_attention``,
  ``cp_multi_head_attention_forward``) and the norms' scales detached (``rms_norm_forward``,
  ``layer_norm_forward``), nothing else: the rules visualizer's ``attnlrp`` claims;
- ``cp``: lxt's shipped ``cp_LRP`` patch map (llama, vit_tv);
- ``attnlrp``: lxt's shipped ``attnLRP`` patch map (llama, bert).

OUT.npz gets ``first`` (batch, tokens): gradient x input at the hidden states entering the
first transformer block (a detached leaf made by a forward pre-hook), summed over the features;
``embed``: lxt's documented recipe, gradient x input at the input embeddings summed over the
features (for images: pixels x gradient, summed over the channels and over each patch;
(batch, patches), no class token); ``output``: the target values (batch,); ``patched``: what
was patched. A (model, mode) that lxt does not ship exits with status 3.

lxt 2.1 was tested on transformers 4.52.4; four shims, each marked below, make it run on 5.x
without touching its rules (the patched forwards reproduce the model's outputs).
"""

from __future__ import annotations

import json
import pathlib
import sys
import warnings
from functools import partial

import numpy as np
import torch

NOT_SHIPPED = 3


def _shim_before_import() -> None:
    """Shim 1: ``lxt.efficient`` imports every model file, and its BERT file (a copy of an old
    ``modeling_bert``) imports ``find_pruneable_heads_and_indices``, which transformers 5 removed.
    It is only used to prune heads; a stand-in lets the import (and so all of lxt.efficient) load."""
    import transformers.pytorch_utils as pytorch_utils

    if not hasattr(pytorch_utils, "find_pruneable_heads_and_indices"):

        def find_pruneable_heads_and_indices(*args, **kwargs):
            raise NotImplementedError("head pruning is not available under transformers 5")

        pytorch_utils.find_pruneable_heads_and_indices = find_pruneable_heads_and_indices


def _shim_attention_interface(module) -> None:
    """Shim 2: lxt's AttnLRP ``patch_attention`` (patches.py) replaces the module's
    ``ALL_ATTENTION_FUNCTIONS`` with a plain dict; transformers 5 calls
    ``ALL_ATTENTION_FUNCTIONS.get_interface(...)`` on it. Wrap the dict, functions unchanged."""
    from transformers.modeling_utils import AttentionInterface

    functions = module.ALL_ATTENTION_FUNCTIONS
    if isinstance(functions, dict):
        interface = AttentionInterface()
        interface._local_mapping.update(functions)
        module.ALL_ATTENTION_FUNCTIONS = interface


def _patch_map(name: str, mode: str):
    """lxt's patch map for (model, mode), ``core`` assembled from lxt's functions; None if lxt ships none."""
    from lxt.efficient import patches

    layer_norm = {torch.nn.LayerNorm: partial(patches.patch_method, patches.layer_norm_forward)}
    if name == "llama":
        import lxt.efficient.models.llama as lxt_llama
        from transformers.models.llama import modeling_llama

        core = {
            modeling_llama.LlamaRMSNorm: partial(patches.patch_method, patches.rms_norm_forward),
            modeling_llama: patches.patch_cp_attention,
        }
        return {"core": core, "cp": lxt_llama.cp_LRP, "attnlrp": lxt_llama.attnLRP}.get(mode)
    if name == "bert":
        import lxt.efficient.models.bert as lxt_bert
        from transformers.models.bert import modeling_bert

        core = {**layer_norm, modeling_bert: patches.patch_cp_attention}
        return {"core": core, "attnlrp": lxt_bert.attnLRP}.get(mode)
    if name == "vit_hf":
        from transformers.models.vit import modeling_vit

        return {"core": {**layer_norm, modeling_vit: patches.patch_cp_attention}}.get(mode)
    if name == "vit_tv":
        import lxt.efficient.models.vit_torch as lxt_vit

        mha = partial(patches.patch_method, patches.cp_multi_head_attention_forward, keep_original=True)
        core = {**layer_norm, torch.nn.MultiheadAttention: mha}
        return {"core": core, "cp": lxt_vit.cp_LRP}.get(mode)
    raise ValueError(f"unknown model {name!r}")


def _load(folder: pathlib.Path, name: str):
    """The model, rebuilt from what the harness saved, in eval mode, with sdpa attention."""
    path = folder / name
    if name == "vit_tv":
        from torchvision.models.vision_transformer import VisionTransformer

        model = VisionTransformer(**json.loads((path / "config.json").read_text()))
        model.load_state_dict(torch.load(path / "weights.pt", weights_only=True))
        return model.eval()
    import transformers
    from safetensors.torch import load_file

    # looked up after patching: lxt's BERT AttnLRP swaps the classes of modeling_bert
    if name == "llama":
        from transformers.models.llama import modeling_llama as module

        cls = module.LlamaForCausalLM
    elif name == "bert":
        from transformers.models.bert import modeling_bert as module

        cls = module.BertForSequenceClassification
    else:
        cls = transformers.ViTForImageClassification
    if not cls.__module__.startswith("lxt"):
        return cls.from_pretrained(path, attn_implementation="sdpa").eval()
    # lxt's BERT copy (AttnLRP): built, then loaded, as from_pretrained leaves its position_ids
    # and token_type_ids buffers (non-persistent, not in the weights) uninitialised
    config = transformers.AutoConfig.from_pretrained(path)
    config._attn_implementation = "sdpa"
    if not hasattr(config, "position_embedding_type"):  # Shim 3: gone from transformers 5's BertConfig
        config.position_embedding_type = "absolute"
    if not hasattr(module.BertPreTrainedModel, "get_head_mask"):  # Shim 4: gone from PreTrainedModel
        module.BertPreTrainedModel.get_head_mask = _no_head_mask
    model = cls(config)
    missing, unexpected = model.load_state_dict(load_file(path / "model.safetensors"), strict=False)
    if missing or unexpected:
        raise RuntimeError(f"{cls.__name__} does not match the saved weights: {missing=} {unexpected=}")
    return model.eval()


def _no_head_mask(self, head_mask, layers: int):
    if head_mask is not None:
        raise NotImplementedError("head masks are not available under transformers 5")
    return [None] * layers


def _first_block(model, name: str):
    """The first transformer block, whose input is the leaf the scores are read at."""
    if name == "llama":
        return model.model.layers[0]
    if name == "bert":
        return model.bert.encoder.layer[0]
    if name == "vit_hf":
        return model.vit.layers[0]
    return model.encoder.layers[0]


def _values(output, name: str, target: int, position: int):
    logits = output if isinstance(output, torch.Tensor) else output.logits
    if name == "llama":
        return logits[:, position, target]
    return logits[:, target]


def _at_first_block(model, name, batch, target, position):
    """Gradient x leaf at the hidden states entering the first block, summed over the features."""
    leaves = []

    def make_leaf(module, args, kwargs):
        if args:
            leaves.append(args[0].detach().requires_grad_(True))
            return (leaves[-1], *args[1:]), kwargs
        leaves.append(kwargs["hidden_states"].detach().requires_grad_(True))
        return args, {**kwargs, "hidden_states": leaves[-1]}

    handle = _first_block(model, name).register_forward_pre_hook(make_leaf, with_kwargs=True)
    try:
        values = _values(model(**batch), name, target, position)
    finally:
        handle.remove()
    (grad,) = torch.autograd.grad(values.sum(), leaves[0])
    return (leaves[0] * grad).sum(-1).detach(), values.detach()


def _at_embeddings(model, name, batch, target, position, patch):
    """lxt's recipe: gradient x input at the input embeddings (text) or the pixels (images)."""
    if name in ("llama", "bert"):
        embeds = model.get_input_embeddings()(batch["input_ids"]).detach().requires_grad_(True)
        rest = {k: v for k, v in batch.items() if k != "input_ids"}
        values = _values(model(inputs_embeds=embeds, **rest), name, target, position)
        (grad,) = torch.autograd.grad(values.sum(), embeds)
        return (embeds * grad).sum(-1).detach()
    key = "pixel_values" if name == "vit_hf" else "x"
    pixels = batch[key].detach().requires_grad_(True)
    values = _values(model(**{**batch, key: pixels}), name, target, position)
    (grad,) = torch.autograd.grad(values.sum(), pixels)
    heat = (pixels * grad).sum(1)  # (batch, height, width)
    b, h, w = heat.shape
    return heat.reshape(b, h // patch, patch, w // patch, patch).sum((2, 4)).flatten(1).detach()


def main(folder: str, name: str, mode: str, out: str) -> int:
    folder = pathlib.Path(folder)
    torch.manual_seed(0)
    _shim_before_import()
    import lxt
    from lxt.efficient import monkey_patch

    patched = []
    if mode != "grad":
        patch_map = _patch_map(name, mode)
        if patch_map is None:
            print(f"lxt {getattr(lxt, '__version__', '2.1')} ships no {mode!r} patch map for {name}")
            return NOT_SHIPPED
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            monkey_patch(None, patch_map)
        failed = [str(w.message) for w in caught if "Failed to patch" in str(w.message)]
        if failed:
            raise RuntimeError(f"lxt could not apply its patches: {failed}")
        for target in patch_map:
            if hasattr(target, "ALL_ATTENTION_FUNCTIONS"):
                _shim_attention_interface(target)
        patched = [getattr(t, "__qualname__", getattr(t, "__name__", str(t))) for t in patch_map]
    model = _load(folder, name)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    saved = np.load(folder / f"{name}.npz")
    target, position = int(saved["target"]), int(saved["position"])
    if name == "vit_tv":
        batch = {"x": torch.from_numpy(saved["pixel_values"])}
        patch = json.loads((folder / name / "config.json").read_text())["patch_size"]
    else:
        batch = {k: torch.from_numpy(saved[k]) for k in saved.files if k not in ("target", "position")}
        patch = getattr(model.config, "patch_size", 0)
    first, values = _at_first_block(model, name, batch, target, position)
    embed = _at_embeddings(model, name, batch, target, position, patch)
    np.savez(
        out,
        first=first.float().numpy(),
        embed=embed.float().numpy(),
        output=values.float().numpy(),
        patched=np.array(patched),
    )
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit(__doc__.split("\n\n")[1])
    sys.exit(main(*sys.argv[1:]))
