"""``transformer-visualizer survey images|texts``: attention statistics over a whole dataset.

    python -m visualizer survey images photos/ --batch-size 16 --workers 2 --out survey-out
    python -m visualizer survey texts sentences.txt --checkpoint run.ckpt
    torchrun --nproc_per_node=2 -m visualizer survey images photos/      # each process a shard

Writes ``survey.json`` (schema version, the exact inputs, the model, the measures, per-layer
and per-head mean, std, count and histograms) and figures: ``distance.png`` (images: each
head's mean attention distance against depth, as in the ViT paper), ``entropy.png`` (layers x
heads), ``sink.png`` (mass on token 0 per layer) and ``cls.png`` (images: the mean CLS map per
layer). Under torchrun only rank 0 shows progress and writes. Every path and option is checked
before the model loads; a file of a folder that turns out unreadable is skipped and listed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from visualizer.cli._common import UsageError, check_image

__all__ = ["add_parser", "run"]

MEASURES = ("distance", "entropy", "sink", "self", "previous")


def _names(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected comma-separated measures such as entropy,sink")
    return names


def add_parser(commands, out_help: str) -> None:
    """The ``survey`` command and its ``images`` and ``texts`` kinds, on the CLI's subparsers."""
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument("--out", type=Path, default=argparse.SUPPRESS, help=out_help)
    options.add_argument("--batch-size", type=int, default=8, help="inputs per forward (default: 8)")
    options.add_argument("--workers", type=int, default=0, help="DataLoader workers that decode (default: 0)")
    options.add_argument(
        "--measures", type=_names, default=None, help="comma-separated (default: all that fit)"
    )
    options.add_argument(
        "--checkpoint", type=Path, default=None, help="a file to checkpoint to and resume from"
    )
    options.add_argument(
        "--checkpoint-every",
        type=int,
        default=10,
        metavar="N",
        help="batches between checkpoints (default: 10)",
    )
    options.add_argument("--device", default="cpu", help="torch device to run on (default: cpu)")
    options.add_argument(
        "--random-weights", action="store_true", help="random weights for --model (no hub needed)"
    )
    survey = commands.add_parser(
        "survey",
        help="attention statistics over a whole dataset (also under torchrun)",
        description="Per-layer, per-head attention statistics over a folder of images or a file of texts, "
        "streamed in batches; resumable, and sharded over the processes of torchrun.",
    )
    kinds = survey.add_subparsers(dest="survey_kind", metavar="{images,texts}", required=True)
    images = kinds.add_parser("images", parents=[options], help="a folder of images, or image files")
    images.add_argument("inputs", nargs="+", type=Path, help="folders (read recursively) or image files")
    images.add_argument("--model", help="a timm model name (default: the offline DINOv2 ViT-S/14)")
    images.add_argument("--weights", type=Path, help="a checkpoint file for --model (a timm state dict)")
    images.add_argument("--size", type=int, default=224, help="input side in pixels (default: 224)")
    texts = kinds.add_parser("texts", parents=[options], help="text files, one text per line")
    texts.add_argument("inputs", nargs="+", type=Path, help="text files (UTF-8), one text per line")
    texts.add_argument(
        "--model", help="a transformers model name or local folder (default: the offline MiniLM)"
    )
    texts.add_argument("--max-length", type=int, default=512, help="tokens kept per text (default: 512)")


def run(args, outputs) -> list[Path]:
    """Check everything, load the model, survey, and write survey.json and the figures (rank 0)."""
    kind = args.survey_kind
    inputs, described = _inputs(kind, args.inputs)
    measures = _measures(kind, args.measures)
    for option, value, low in (
        ("--batch-size", args.batch_size, 1),
        ("--workers", args.workers, 0),
        ("--checkpoint-every", args.checkpoint_every, 1),
    ):
        if value < low:
            raise UsageError(f"{option} must be at least {low}, not {value}")
    if args.checkpoint is not None and args.checkpoint.is_dir():
        raise UsageError(f"--checkpoint {args.checkpoint} is a folder; give a file path")
    from visualizer._survey._distributed import join

    join()  # under torchrun: before the model moves, so that "cuda" is this rank's GPU
    if args.random_weights:
        import torch

        torch.manual_seed(0)  # the same random model in every process (and every run)
    if kind == "images":
        from visualizer.cli import _vit

        if not 14 <= args.size <= 4096:
            raise UsageError(f"--size {args.size} is not a sensible input side; use e.g. 224")
        if args.model is None and (args.weights is not None or args.random_weights):
            raise UsageError("--weights and --random-weights go with --model NAME")
        device = _vit._device(args.device)
        model, label = _vit._model(args)
        tokenizer = None
    else:
        from visualizer.cli import _bert, _vit

        if args.max_length < 2:
            raise UsageError(f"--max-length must be at least 2, not {args.max_length}")
        if args.model is None and args.random_weights:
            raise UsageError("--random-weights goes with --model NAME")
        device = _vit._device(args.device)
        model, tokenizer, label = _bert._model(args)
    from visualizer import survey

    model.to(device)
    try:
        result = survey(
            model,
            inputs,
            measures,
            args.batch_size,
            kind=kind,
            tokenizer=tokenizer,
            max_length=getattr(args, "max_length", 512),
            image_size=getattr(args, "size", 224),
            num_workers=args.workers,
            checkpoint=args.checkpoint,
            checkpoint_every=args.checkpoint_every,
            device=device,
            progress=True,
        )
    except ValueError as exc:  # no readable input at all; a checkpoint of another survey
        raise UsageError(str(exc).removeprefix("survey(): ")) from None
    result.meta |= {"model": label} | ({} if described is None else {"inputs": described})
    if join()[0] != 0:
        return []
    folder = outputs.out
    outputs.json(folder, "survey.json", result.to_dict())
    figures = {
        "distance.png": result.plot_distance,
        "entropy.png": result.plot_entropy,
        "sink.png": result.plot_sink,
    }
    for name, make in figures.items():
        if name.removesuffix(".png") in result.measures:
            outputs.figure(folder, name, make())
    if result.cls_map() is not None:
        outputs.figure(folder, "cls.png", result.plot_cls_maps())
    outputs.done(folder)
    return outputs.written


def _inputs(kind: str, paths: list[Path]):
    """(what survey() reads, the exact inputs for survey.json), checked before any model loads."""
    for path in paths:
        if not path.exists():
            raise UsageError(f"no such file or folder: {path}")
    if kind == "images":
        files = []
        for path in paths:
            if path.is_dir():
                found = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
                if not found:
                    raise UsageError(f"the folder {path} holds no files; give a folder of images")
                files.extend(found)
            else:
                check_image(path)  # a file named on the command line must be an image
                files.append(path)
        if len(paths) == 1 and paths[0].is_dir():
            return paths[0], None  # survey() describes the folder and every file in it
        return [str(p) for p in files], {"kind": "images", "files": [str(p) for p in files]}
    texts, described = [], []
    for path in paths:
        if path.is_dir():
            raise UsageError(f"{path} is a folder; give text files, one text per line")
        try:
            lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        except UnicodeDecodeError as exc:
            raise UsageError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        except OSError as exc:
            raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
        if not lines:
            raise UsageError(f"{path} holds no text; give a file with one text per line")
        texts.extend(lines)
        described.append({"file": str(path), "lines": len(lines)})
    return texts, {"kind": "texts", "files": described}


def _measures(kind: str, names):
    if names is None:
        return None
    for name in names:
        if name not in MEASURES:
            raise UsageError(f"--measures: unknown measure {name!r}; choose from {', '.join(MEASURES)}")
        if name == "distance" and kind == "texts":
            raise UsageError("--measures: distance is over a patch grid, for images only")
    if len(set(names)) != len(names):
        raise UsageError(f"--measures names a measure twice: {','.join(names)}")
    return names
