"""``python -m visualizer`` (also ``transformer-visualizer``): attention figures, views and statistics.

    python -m visualizer                                   # offline defaults: DINOv2 ViT-S/14 on
                                                           # the sample images, MiniLM on a sentence,
                                                           # and the induction-heads demo (lm)
    python -m visualizer vit cat.jpg dog.png --out figs    # your images
    python -m visualizer bert "The cat sat on the mat."    # your text
    python -m visualizer lm --generate 20                  # a causal LM: the induction-heads demo
    python -m visualizer bert "A text." --explain none     # no relevance.png, faithfulness.png
    python -m visualizer survey images photos/             # measures over a dataset (torchrun too)
    python -m visualizer vit --help

Each run writes PNG figures, an interactive HTML view (self-contained, offline) and a
statistics JSON per input into its own folder under --out (named after the input, Unicode
kept, clashes made unique: ``a.png`` and ``a.jpg`` -> ``a-png``, ``a-jpg``), every file
atomically, and prints where they are. Every input and option is checked before a model
loads (layer and head ranges right after it loads, before the first forward). Bad input
(a missing file, a file that is not an image, an image too large to decode, an unknown
model, a layer or head out of range, an --out that cannot be written) gets one line
``error: ...`` and exit status 2, never a traceback; what an unfinished input wrote is
removed. A text longer than the model's 512 tokens is truncated with a warning; text
figures show at most the first 64 tokens and say so.

``vit``, ``bert`` and ``lm`` also explain each input (``--explain METHOD``, default
``attention_grad``; any of ``visualizer.relevance.METHODS``, or ``none`` to skip): which
tokens drove the output (:mod:`visualizer.cli._explain` says which output), in
``relevance.png``, with ``faithfulness.png`` (how the output falls as those tokens are
removed) and the scores and AUCs in ``stats.json``. The main job explains one input: the
induction-heads demo's next token (a fraction of a second), not the images or the sentence.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from visualizer.cli import _survey
from visualizer.cli._bert import SAMPLE_TEXT
from visualizer.cli._common import UsageError, index_list
from visualizer.cli._explain import DEFAULT_METHOD, NONE, methods_text
from visualizer.cli._outputs import Outputs

__all__ = ["main", "report_written"]

DEFAULT_OUT = "visualizer-output"
DEFAULT_GENERATE = 6  # tokens the main job's induction-heads demo generates: the rest of its copy


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 success, 1 failure, 2 bad input)."""
    for stream in (sys.stdout, sys.stderr):  # a path named 猫 on an ASCII console: 猫 escaped, no traceback
        try:
            stream.reconfigure(errors="backslashreplace")
        except (AttributeError, ValueError, OSError):
            pass
    parser = _parser()
    args = parser.parse_args(argv)
    outputs = Outputs(args.out)
    try:
        outputs.check()
        if args.command is None:
            written = _defaults(args, outputs)
        elif args.command == "survey":
            written = _survey.run(args, outputs)
        elif args.command == "vit":
            from visualizer.cli import _vit

            written = _vit.run(args, outputs)
        elif args.command == "lm":
            from visualizer.cli import _lm

            written = _lm.run(args, outputs)
        else:
            from visualizer.cli import _bert

            written = _bert.run(args, outputs)
    except UsageError as exc:
        outputs.discard()
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        _kept(outputs.written, parser.prog)
        return 2
    except KeyboardInterrupt:
        outputs.discard()
        print(f"{parser.prog}: interrupted", file=sys.stderr)
        _kept(outputs.written, parser.prog)
        return 130
    except BaseException:
        outputs.discard()  # a bug: its traceback follows, but no partial input stays behind
        raise
    report_written(written, args.out)
    return 0


def _kept(written: list[Path], prog: str) -> None:
    if written:
        print(f"{prog}: kept the {len(written)} files of the inputs done before:", file=sys.stderr)
        for path in written:
            print(f"  {path}", file=sys.stderr)


def _defaults(args, outputs: Outputs) -> list[Path]:
    from visualizer.cli import _bert, _lm, _vit

    print(
        "transformer-visualizer: offline defaults (DINOv2 ViT-S/14 on the sample images, MiniLM on a "
        f"sentence, the induction-heads demo generating {DEFAULT_GENERATE} tokens, its next token explained "
        f"with {args.explain})"
    )
    # One explained input: the demo's, whose answer is known (the token after the earlier copy of the
    # last one) and which costs a fraction of a second; the ViT's would add about a minute on a CPU.
    vit_args = argparse.Namespace(
        **{
            **vars(args),
            "images": [],
            "model": None,
            "weights": None,
            "random_weights": False,
            "size": 224,
            "explain": NONE,
        }
    )
    bert_args = argparse.Namespace(
        **{**vars(args), "text": [SAMPLE_TEXT], "model": None, "random_weights": False, "explain": NONE}
    )
    lm_args = argparse.Namespace(
        **{**vars(args), "text": [], "model": None, "random_weights": False, "generate": DEFAULT_GENERATE}
    )
    _vit.run(vit_args, outputs)
    _bert.run(bert_args, outputs)
    return _lm.run(lm_args, outputs)


def report_written(written: list[Path], out: Path) -> None:
    """Print the folders and files a run wrote (nothing on a torchrun rank other than 0 that wrote none)."""
    if not written and os.environ.get("RANK", "0") != "0":
        return  # another rank of a torchrun survey: rank 0 writes the files and reports them
    folders = sorted({path.parent for path in written})
    print(f"\nWrote {len(written)} files under {out.resolve()}:")
    for folder in folders:
        names = sorted(path.name for path in written if path.parent == folder)
        print(f"  {folder.resolve()}/: {', '.join(names)}")
    views = [path for path in written if path.suffix == ".html"]
    if views:
        print(f"Open {views[0].resolve()} in a browser to explore the attention interactively.")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="transformer-visualizer",
        description="Attention figures, interactive views and statistics for vision and text transformers. "
        "With no command it runs offline on the embedded defaults.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.add_argument(
        "--out", type=Path, default=Path(DEFAULT_OUT), help=f"output folder (default: {DEFAULT_OUT})"
    )
    parser.set_defaults(
        command=None, layers=None, heads=None, layer=None, device="cpu", explain=DEFAULT_METHOD
    )
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: `--out` given before the command must not be reset by the command's default.
    common.add_argument(
        "--out", type=Path, default=argparse.SUPPRESS, help=f"output folder (default: {DEFAULT_OUT})"
    )
    common.add_argument(
        "--layers",
        type=index_list,
        default=None,
        metavar="L",
        help="attention layers to show, comma-separated indices, negative from the end (default: all)",
    )
    common.add_argument(
        "--heads",
        type=index_list,
        default=None,
        metavar="H",
        help="heads to show, comma-separated indices (default: all)",
    )
    common.add_argument(
        "--layer",
        type=int,
        default=None,
        metavar="N",
        help="the layer for single-layer figures (default: two thirds of the way up)",
    )
    common.add_argument("--device", default="cpu", help="torch device to run on (default: cpu)")
    common.add_argument(
        "--explain",
        default=DEFAULT_METHOD,
        metavar="METHOD",
        help="which input tokens drove the output, written to relevance.png, faithfulness.png (the output "
        "as those tokens are removed) and stats.json: {methods}; or none to skip it "
        f"(default: {DEFAULT_METHOD})",
    )
    commands = parser.add_subparsers(dest="command", metavar="{vit,bert,lm,survey}")

    vit = commands.add_parser(
        "vit",
        parents=[common],
        formatter_class=_Help,
        help="vision transformer attention over images",
        description="Attention of a vision transformer over images: figures, an interactive view and "
        "statistics per image. Default model: DINOv2 ViT-S/14 with offline weights.",
    )
    vit.add_argument("images", nargs="*", type=Path, help="image files (default: the sample images)")
    vit.add_argument("--model", help="a timm model name (default: the offline DINOv2 ViT-S/14)")
    vit.add_argument("--weights", type=Path, help="a checkpoint file for --model (a timm state dict)")
    vit.add_argument(
        "--random-weights", action="store_true", help="random weights for --model (no hub needed)"
    )
    vit.add_argument("--size", type=int, default=224, help="input side in pixels (default: 224)")

    bert = commands.add_parser(
        "bert",
        parents=[common],
        formatter_class=_Help,
        help="text transformer attention between tokens",
        description="Attention between the tokens of a text encoder: figures, an interactive head view and "
        "statistics per text. Default model: all-MiniLM-L6-v2 with offline weights.",
    )
    bert.add_argument("text", nargs="*", help=f"texts to encode (default: {SAMPLE_TEXT!r})")
    bert.add_argument(
        "--model", help="a transformers model name or local folder (default: the offline MiniLM)"
    )
    bert.add_argument(
        "--random-weights", action="store_true", help="random weights for --model (its config only)"
    )
    lm = commands.add_parser(
        "lm",
        parents=[common],
        formatter_class=_Help,
        help="causal language model attention over a prompt and what it generates",
        description="Attention of a causal language model over a prompt and the tokens it generates: "
        "figures, a model view, a text view and statistics per prompt. Default model: the induction-heads "
        "demo (a 2-layer GPT-2 trained here once, then cached), on one of its repeated sequences.",
    )
    lm.add_argument(
        "text",
        nargs="*",
        help="prompts (default: the demo's repeated sequence; with --model, "
        "a sample sentence); for the demo, words of its vocabulary",
    )
    lm.add_argument("--model", help="a transformers causal LM name or local folder (default: the demo)")
    lm.add_argument(
        "--random-weights", action="store_true", help="random weights for --model (its config only)"
    )
    lm.add_argument(
        "--generate",
        type=int,
        default=0,
        metavar="N",
        help="generate N tokens greedily and show the whole run (default: 0, the prompt only)",
    )
    _survey.add_parser(commands, f"output folder (default: {DEFAULT_OUT})")
    return parser


class _Help(argparse.HelpFormatter):
    """Fills in ``{methods}``, the methods of ``--explain``, only when help is shown: they come from
    visualizer.relevance, which imports torch, and parsing the command line imports none."""

    def _get_help_string(self, action) -> str | None:
        text = super()._get_help_string(action)
        return text.replace("{methods}", methods_text()) if text else text


def _version() -> str:
    from visualizer import __version__

    return __version__
