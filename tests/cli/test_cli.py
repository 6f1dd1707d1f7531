"""The command line: figures, views and statistics written, and one clear line for each bad input."""

import json
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from visualizer.cli import main

VIT = ["vit", "--model", "vit_tiny_patch16_224", "--random-weights", "--size", "64"]


@pytest.fixture
def images(tmp_path):
    from PIL import Image

    paths = []
    for i, size in enumerate([(90, 120), (64, 64)]):
        pixels = np.random.default_rng(i).integers(0, 255, (*size, 3), dtype=np.uint8)
        path = tmp_path / f"photo{i}.png"
        Image.fromarray(pixels).save(path)
        paths.append(str(path))
    return paths


@pytest.fixture
def tiny_bert_folder(tmp_path):
    """A random BERT saved with its tokenizer, as a local model folder (no hub)."""
    from transformers import BertConfig, BertModel

    from visualizer.models._bert import minilm_folder

    torch.manual_seed(0)
    folder = tmp_path / "tiny-bert"
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=3, num_attention_heads=4)
    BertModel(config).save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        (folder / name).write_bytes((minilm_folder() / name).read_bytes())
    return folder


def test_vit_writes_figures_view_and_statistics_per_image(images, tmp_path, capsys):
    out = tmp_path / "out"
    assert main([*VIT, *images, "--out", str(out), "--layers", "0,-1", "--heads", "1"]) == 0
    for name in ("photo0", "photo1"):
        folder = out / name
        assert sorted(p.name for p in folder.iterdir()) == [
            "cls.png",
            "distance.png",
            "faithfulness.png",
            "grids.png",
            "head.png",
            "heads.png",
            "relevance.png",
            "rollout.png",
            "stats.json",
            "view.html",
        ]
        stats = json.loads((folder / "stats.json").read_text())
        assert stats["grid"] == [4, 4] and len(stats["layers"]) == 12 and len(stats["entropy_per_head"]) == 2
        assert "<script" in (folder / "view.html").read_text()
    printed = capsys.readouterr()
    assert f"Wrote 20 files under {out.resolve()}" in printed.out
    assert "images" in printed.err  # the progress bar, on a multi-image run


def test_bert_writes_figures_and_a_head_view(tiny_bert_folder, tmp_path):
    out = tmp_path / "out"
    assert (
        main(["bert", "--model", str(tiny_bert_folder), "--out", str(out), "The cat sat.", "Dogs bark."]) == 0
    )
    assert sorted(p.name for p in (out / "text-2").iterdir()) == [
        "faithfulness.png",
        "heads.png",
        "layers.png",
        "relevance.png",
        "stats.json",
        "tokens.png",
        "view.html",
    ]
    stats = json.loads((out / "text-1" / "stats.json").read_text())
    assert stats["tokens"] == ["[CLS]", "the", "cat", "sat", ".", "[SEP]"]
    assert stats["top_pairs_layer_2"][0]["weight"] >= stats["top_pairs_layer_2"][-1]["weight"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["vit", "missing.png"], "no such file: missing.png"),
        ([*VIT, "NOT_AN_IMAGE"], "is not an image file PIL can read"),
        (
            ["vit", "--model", "vit_tiny_patch16_225"],
            "unknown model name 'vit_tiny_patch16_225'.*Did you mean vit_tiny_patch16_224",
        ),
        (
            [*VIT, "--layer", "12", "IMAGE"],
            r"--layer: layer 12 is out of range; there are 12 layers \(valid: 0..11, or -12..-1\)",
        ),
        (
            [*VIT, "--heads", "0,3", "IMAGE"],
            r"--heads: head 3 is out of range; there are 3 heads \(valid: 0..2, or -3..-1\)",
        ),
        (["bert", "--layers", "6", "hi"], r"--layers: layer 6 is out of range; there are 6 layers"),
        (["bert", "--heads", "0,0", "hi"], r"--heads selects head 0 more than once"),
        (["bert", "  "], "text 1 is empty"),
        # Windowed attention: refused by its declared layout (or, while the timm adapter does not
        # declare it yet, by the shape of its maps), never drawn as if it were a token map.
        (
            ["vit", "--model", "swin_tiny_patch4_window7_224", "--random-weights", "--size", "56", "IMAGE"],
            r"'layers.0.blocks.0.attn' (has layout windows|has maps of shape \(4, 3, 49, 49\)).*Python API",
        ),
        (
            ["vit", "--model", "xcit_nano_12_p16_224", "--random-weights", "--size", "64", "IMAGE"],
            r"(layout channels|needs a ViT-style model).*Python API",
        ),
        (["vit", "--weights", "w.pth"], "--weights and --random-weights go with --model NAME"),
    ],
)
def test_bad_input_gets_one_clear_line_and_status_2(args, message, images, tmp_path, capsys):
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    args = [{"NOT_AN_IMAGE": str(text), "IMAGE": images[0]}.get(arg, arg) for arg in args]
    assert main([*args, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.count("transformer-visualizer: error:") == 1
    assert re.search(message, err), err


def test_the_module_and_the_console_script_run_without_a_traceback(tmp_path):
    script = pathlib.Path(sys.executable).with_name("transformer-visualizer")  # installed beside python
    for command in ([sys.executable, "-m", "visualizer"], [str(script)]):
        result = subprocess.run([*command, "vit", str(tmp_path / "nope.jpg")], capture_output=True, text=True)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert "no such file" in result.stderr


def test_layers_declared_with_windows_or_channels_are_a_usage_error():
    from analysis.declared_maps import build, info, softmax

    from visualizer._structure import CHANNELS, Windows
    from visualizer.cli._common import UsageError, check_token_layers

    windows = Windows(window=(2, 2), grid=(1, 1))
    maps = build(
        [
            (info("blocks.0.attn", 0), softmax(1, 2, 5, 5)),
            (info("blocks.1.attn", 1, layout=windows), softmax(1, 2, 4, 4)),
        ]
    )
    with pytest.raises(
        UsageError, match=r"m: attention layer 'blocks.1.attn' has layout windows \(2x2.*scatter.*Python API"
    ):
        check_token_layers(maps, "m")
    channels = build([(info("blocks.0.attn", 0, layout=CHANNELS), softmax(1, 2, 8, 8))])
    with pytest.raises(UsageError, match="layout channels"):
        check_token_layers(channels, "m")
    check_token_layers(build([(info("a", 0), softmax(1, 2, 5, 5))]), "m")  # tokens pass
