"""Cross-check ``explain(method="attnlrp")`` (CP-LRP) against lxt, AttnLRP's own implementation.

lxt (LRP-eXplains-Transformers, Achtibat et al., ICML 2024) computes LRP as gradient x input
on a model whose classes it monkey-patches. On four tiny random models (fixed seeds, eval,
sdpa), this script runs lxt in its own virtual environment (``peer_lxt_worker.py``, one
process per patch map: lxt's patches are global and cannot be undone) and compares the scores
per token with visualizer's, all read at the hidden states entering the first block:

- ``llama``: LlamaForCausalLM, 2 layers, hidden 64, 4 heads, 2 key/value heads, vocabulary 100;
  the logit of token 7 at the last position;
- ``bert``: BertForSequenceClassification, 2 layers, hidden 64, 4 heads; class 1's logit;
- ``vit_hf``: ViTForImageClassification, 32x32 images, 8x8 patches, 2 layers; class 3's logit;
- ``vit_tv``: torchvision's VisionTransformer, the same sizes (the only ViT lxt ships a map for).

lxt's modes (see ``peer_lxt_worker.py``): ``grad`` (nothing patched), ``core`` (only the
attention's queries and keys and the norms' scales detached, built from lxt's own patch
functions: CP-LRP as Ali et al. define it), ``cp`` and ``attnlrp`` (lxt's shipped ``cp_LRP``
and ``attnLRP`` maps, where it ships them). Each is compared with visualizer's ``attnlrp``;
``grad`` also with visualizer's ``input_x_gradient``. Per pair: the largest absolute
difference, that over the largest |lxt score|, Pearson's r, and ``np.allclose(ours, lxt,
rtol=1e-4, atol=1e-5)``; and Δoutput, the largest difference of the target values (lxt's
patched forward must compute the model's outputs). ``core`` vs ``attnlrp`` is the like-for-like
check; ``grad`` vs ``attnlrp`` shows that detaching changes the numbers. The last lines compare,
for text, lxt's documented reading point (the input embeddings) with the first block's input.

lxt's environment (once, from the repository root; about 6 GB, as torch's CUDA wheels come along;
``benchmarks/.peers/`` is git-ignored)::

    python3 -m venv benchmarks/.peers/lxt
    benchmarks/.peers/lxt/bin/pip install torch==2.14.1 torchvision==0.29.1 transformers==5.23.0
    benchmarks/.peers/lxt/bin/pip install --no-deps lxt==2.1
    benchmarks/.peers/lxt/bin/pip install zennit

Run (a few minutes on two cores: one process per model and mode)::

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/peer_lxt.py
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/peer_lxt.py --models llama --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile

import numpy as np
import torch

HERE = pathlib.Path(__file__).resolve().parent
LXT_PYTHON = HERE / ".peers" / "lxt" / "bin" / "python"
WORKER = HERE / "peer_lxt_worker.py"
MODELS = ("llama", "bert", "vit_hf", "vit_tv")
MODES = ("grad", "core", "cp", "attnlrp")
NOT_SHIPPED = 3
RTOL, ATOL = 1e-4, 1e-5
HEADER = (
    f"{'model':<7} {'lxt':<8} {'visualizer':<17} {'max|a-b|':>10} {'rel':>10} {'pearson':>9} "
    f"{'allclose':>8} {'Δoutput':>9}"
)
SETUP = f"""lxt's virtual environment is missing ({LXT_PYTHON}). Create it, from the repository root:

    python3 -m venv benchmarks/.peers/lxt
    benchmarks/.peers/lxt/bin/pip install torch==2.14.1 torchvision==0.29.1 transformers==5.23.0
    benchmarks/.peers/lxt/bin/pip install --no-deps lxt==2.1
    benchmarks/.peers/lxt/bin/pip install zennit"""


def build(name: str):
    """The tiny model ``name`` (seeded), its inputs, the target logit and the position."""
    import transformers

    torch.manual_seed(0)
    if name == "llama":
        config = transformers.LlamaConfig(
            vocab_size=100,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=64,
            initializer_range=0.2,
        )
        model = transformers.LlamaForCausalLM(config)
        inputs = {"input_ids": torch.randint(0, 100, (2, 12))}
        return model.eval(), inputs, 7, 11
    if name == "bert":
        config = transformers.BertConfig(
            vocab_size=100,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=64,
            num_labels=3,
            initializer_range=0.2,
        )
        model = transformers.BertForSequenceClassification(config)
        ids = torch.randint(0, 100, (2, 10))
        inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        return model.eval(), inputs, 1, 0
    if name == "vit_hf":
        config = transformers.ViTConfig(
            image_size=32,
            patch_size=8,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_labels=10,
            initializer_range=0.2,
        )
        model = transformers.ViTForImageClassification(config)
        return model.eval(), {"pixel_values": torch.randn(2, 3, 32, 32)}, 3, 0
    if name == "vit_tv":
        from torchvision.models.vision_transformer import VisionTransformer

        config = _vit_tv_config()
        model = VisionTransformer(**config)
        torch.nn.init.normal_(model.heads.head.weight, std=0.2)  # torchvision zeroes the head
        return model.eval(), {"x": torch.randn(2, 3, 32, 32)}, 3, 0
    raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODELS)}")


def _vit_tv_config() -> dict:
    return dict(
        image_size=32, patch_size=8, num_layers=2, num_heads=4, hidden_dim=64, mlp_dim=128, num_classes=10
    )


def save(folder: pathlib.Path, name: str, model, inputs, target: int, position: int) -> None:
    """What the worker loads: FOLDER/NAME/ (config and weights) and FOLDER/NAME.npz."""
    path = folder / name
    if name == "vit_tv":
        path.mkdir()
        (path / "config.json").write_text(json.dumps(_vit_tv_config()))
        torch.save(model.state_dict(), path / "weights.pt")
        arrays = {"pixel_values": inputs["x"].numpy()}
    else:
        model.save_pretrained(path)
        arrays = {k: v.numpy() for k, v in inputs.items()}
    np.savez(folder / f"{name}.npz", target=target, position=position, **arrays)


def run_lxt(folder: pathlib.Path, name: str, mode: str) -> dict | str:
    """lxt's scores for (model, mode) from a fresh worker process, or why there are none."""
    out = folder / f"{name}-{mode}.npz"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}
    command = [str(LXT_PYTHON), str(WORKER), str(folder), name, mode, str(out)]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    if result.returncode == NOT_SHIPPED:
        return "not shipped by lxt"
    if result.returncode != 0:
        return "failed: " + (result.stderr.strip().splitlines() or ["?"])[-1][:300]
    with np.load(out) as saved:
        return {key: saved[key] for key in saved.files}


def ours(name: str, model, inputs, target: int, position: int, method: str):
    """visualizer's scores (batch, tokens) and target values (batch,)."""
    from visualizer import explain

    call = inputs["x"] if name == "vit_tv" else inputs
    relevance = explain(model, call, target, method=method, position=position if name == "llama" else None)
    return relevance.scores.numpy(), relevance.outputs.numpy()


def compare(a: np.ndarray, b: np.ndarray, outputs=None) -> dict:
    """a (ours) against b (lxt): max |a-b|, that over max |b|, Pearson's r, allclose; and the
    largest difference of the target values (ours, lxt), which shows lxt's forward is the model's."""
    if a.shape != b.shape:
        return {"shape": f"{a.shape} vs {b.shape}"}
    diff = float(np.abs(a - b).max())
    scale = float(np.abs(b).max())
    r = float(np.corrcoef(a.ravel(), b.ravel())[0, 1])
    stats = {
        "max_abs": diff,
        "rel": diff / scale if scale else float("inf"),
        "pearson": r,
        "allclose": bool(np.allclose(a, b, rtol=RTOL, atol=ATOL)),
    }
    if outputs is not None:
        stats["outputs_max_abs"] = float(np.abs(outputs[0] - outputs[1]).max())
    return stats


def _row(model: str, lxt_mode: str, method: str, stats: dict) -> str:
    if "shape" in stats:
        return f"{model:<7} {lxt_mode:<8} {method:<17} shapes differ: {stats['shape']}"
    return (
        f"{model:<7} {lxt_mode:<8} {method:<17} {stats['max_abs']:>10.3e} {stats['rel']:>10.3e} "
        f"{stats['pearson']:>9.6f} {str(stats['allclose']):>8} {stats.get('outputs_max_abs', np.nan):>9.1e}"
    )


def check(folder: pathlib.Path, name: str, modes, have_ours: bool) -> tuple[dict, list[str]]:
    """Every lxt mode of model ``name`` against visualizer: the report entry and the table rows."""
    model, inputs, target, position = build(name)
    save(folder, name, model, inputs, target, position)
    mine = {}
    for method in ("attnlrp", "input_x_gradient") if have_ours else ():
        try:
            mine[method] = ours(name, model, inputs, target, position, method)
        except Exception as error:  # a model ours refuses is a finding, not a crash
            mine[method] = f"{type(error).__name__}: {error}"
    report: dict = {"ours": {k: v if isinstance(v, str) else v[0].tolist() for k, v in mine.items()}}
    rows = []
    for mode in modes:
        lxt = run_lxt(folder, name, mode)
        entry = report.setdefault(mode, {})
        if isinstance(lxt, str):
            entry["lxt"] = lxt
            rows.append(f"{name:<7} {mode:<8} {lxt}")
            continue
        entry["lxt_first"] = lxt["first"].tolist()
        entry["patched"] = lxt["patched"].tolist()
        if lxt["embed"].shape == lxt["first"].shape:
            entry["recipe_vs_first"] = compare(lxt["embed"], lxt["first"])
        if not have_ours:
            scores = np.array2string(lxt["first"][0], precision=3)
            rows.append(f"{name:<7} {mode:<8} lxt first-block scores {scores}")
            continue
        for method in ("attnlrp", "input_x_gradient") if mode == "grad" else ("attnlrp",):
            if isinstance(mine[method], str):
                rows.append(f"{name:<7} {mode:<8} {method:<17} ours failed: {mine[method][:200]}")
                continue
            scores, outputs = mine[method]
            entry[f"vs_{method}"] = stats = compare(scores, lxt["first"], (outputs, lxt["output"]))
            rows.append(_row(name, mode, method, stats))
    return report, rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--json", help="also write every number to this file")
    args = parser.parse_args(argv)
    if not LXT_PYTHON.exists():
        print(SETUP, file=sys.stderr)
        return 2
    from visualizer.relevance import METHODS

    have_ours = "attnlrp" in METHODS
    if not have_ours:
        print("visualizer.relevance.METHODS has no 'attnlrp' yet: lxt's scores are printed alone\n")
    report, rows = {}, []
    with tempfile.TemporaryDirectory(prefix="peer_lxt-") as tmp:
        for name in args.models:
            report[name], more = check(pathlib.Path(tmp), name, args.modes, have_ours)
            rows += more
    print(HEADER)
    print("\n".join(rows))
    recipes = [
        (name, mode, entry["recipe_vs_first"])
        for name, modes in report.items()
        for mode, entry in modes.items()
        if "recipe_vs_first" in entry
    ]
    if recipes:
        print("\nlxt's recipe (the input embeddings) vs the first block's input, both lxt:")
        for name, mode, stats in recipes:
            print(f"  {name:<7} {mode:<8} max|a-b| {stats['max_abs']:.3e}  pearson {stats['pearson']:.6f}")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
