"""``python -m visualizer survey images|texts``: survey.json and figures; one line for each bad input."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from visualizer import SurveyResult
from visualizer.cli import main

IMAGES = ["survey", "images", "--model", "vit_tiny_patch16_224", "--random-weights", "--size", "32"]


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    (root / "sub").mkdir()
    for i in range(3):
        pixels = np.random.default_rng(i).integers(0, 255, (40 + 10 * i, 50, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / ("sub" if i else ".") / f"p{i}.png")
    (root / "sub" / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    return root


@pytest.fixture
def tiny_bert_folder(tmp_path):
    from transformers import BertConfig, BertModel

    from visualizer.models._bert import minilm_folder

    torch.manual_seed(0)
    folder = tmp_path / "tiny-bert"
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4)
    BertModel(config).save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        (folder / name).write_bytes((minilm_folder() / name).read_bytes())
    return folder


def test_survey_images_writes_the_json_and_figures(photos, tmp_path, capsys):
    out = tmp_path / "out"
    assert main([*IMAGES, str(photos), "--batch-size", "2", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "cls.png",
        "distance.png",
        "entropy.png",
        "sink.png",
        "survey.json",
    ]
    data = json.loads((out / "survey.json").read_text())
    assert data["schema"] == "transformer-visualizer/survey" and data["schema_version"] == 1
    assert data["model"] == "vit_tiny_patch16_224 (random weights)"
    assert data["inputs"]["folder"] == str(photos)
    assert data["inputs"]["files"] == ["p0.png", "sub/broken.jpg", "sub/p1.png", "sub/p2.png"]
    assert data["measures"] == ["distance", "entropy", "sink", "self"] and data["inputs_counted"] == 3
    assert data["skipped_count"] == 1 and data["skipped"][0]["path"] == str(photos / "sub" / "broken.jpg")
    assert len(data["results"]["entropy"]["mean"]) == 12 and len(data["results"]["entropy"]["mean"][0]) == 3
    assert "broken.jpg" in capsys.readouterr().err
    # 32 px in 16 px patches: 4 patch queries and 5 queries in all (with CLS) per image
    assert data["results"]["distance"]["count"][0] == [3 * 4] * 3
    assert data["results"]["sink"]["count"][-1] == [3 * 5] * 3
    loaded = SurveyResult.load(out / "survey.json")
    np.testing.assert_allclose(loaded.mean("entropy"), np.array(data["results"]["entropy"]["mean"]))


def test_survey_texts_with_a_measure_chosen(tiny_bert_folder, tmp_path):
    texts = tmp_path / "texts.txt"
    texts.write_text("The cat sat on the mat.\n\nDogs bark at night.\nA third line.\n", encoding="utf-8")
    out = tmp_path / "out"
    arguments = ["survey", "texts", str(texts), "--model", str(tiny_bert_folder), "--random-weights"]
    assert main([*arguments, "--measures", "entropy,sink,previous", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["entropy.png", "sink.png", "survey.json"]
    data = json.loads((out / "survey.json").read_text())
    assert data["inputs"] == {"kind": "texts", "files": [{"file": str(texts), "lines": 3}]}
    assert data["measures"] == ["entropy", "sink", "previous"] and data["inputs_counted"] == 3
    # [CLS] the cat sat on the mat . [SEP] = 9 real tokens; 7 and 6 for the others
    assert data["results"]["entropy"]["count"][0][0] == 9 + 7 + 6


def test_survey_texts_resumes_from_its_checkpoint(tiny_bert_folder, tmp_path):
    texts = tmp_path / "texts.txt"
    texts.write_text("One line of text.\nAnother, longer line of text.\nA third.\n", encoding="utf-8")
    arguments = ["survey", "texts", str(texts), "--model", str(tiny_bert_folder), "--random-weights"]
    checkpoint = ["--checkpoint", str(tmp_path / "run.ckpt"), "--batch-size", "1"]
    assert main([*arguments, *checkpoint, "--out", str(tmp_path / "a")]) == 0
    state = json.loads((tmp_path / "run.ckpt").read_text())
    assert state["position"] == 3 and state["tally"]["inputs"] == 3
    assert main([*arguments, *checkpoint, "--out", str(tmp_path / "b")]) == 0  # nothing left: the same counts
    a, b = (json.loads((tmp_path / name / "survey.json").read_text()) for name in "ab")
    assert a["results"] == b["results"] and a["tally"] == b["tally"]


@pytest.mark.parametrize(
    ("arguments", "pattern"),
    [
        (["survey", "images", "{missing}"], r"no such file or folder: .*missing"),
        (["survey", "images", "{empty}"], r"the folder .* holds no files"),
        (
            ["survey", "images", "{bad}", "--model", "no_such_model"],
            r"bad\.png is not an image file PIL can read",
        ),
        (["survey", "images", "{photos}", "--batch-size", "0"], r"--batch-size must be at least 1, not 0"),
        (["survey", "images", "{photos}", "--workers", "-1"], r"--workers must be at least 0"),
        (
            ["survey", "images", "{photos}", "--measures", "loudness"],
            r"--measures: unknown measure 'loudness'",
        ),
        (["survey", "texts", "{text}", "--measures", "distance"], r"distance is over a patch grid"),
        (["survey", "texts", "{latin1}"], r"latin1\.txt is not UTF-8 text"),
        (["survey", "texts", "{blank}"], r"blank\.txt holds no text"),
        (["survey", "images", "{photos}", "--model", "no_such_model"], r"unknown model name 'no_such_model'"),
        (
            ["survey", "images", "{photos}", "--random-weights"],
            r"--weights and --random-weights go with --model",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(arguments, pattern, photos, tmp_path, capsys):
    files = {
        "missing": tmp_path / "missing",
        "empty": tmp_path / "empty",
        "bad": tmp_path / "bad.png",
        "photos": photos,
        "text": tmp_path / "ok.txt",
        "latin1": tmp_path / "latin1.txt",
        "blank": tmp_path / "blank.txt",
    }
    files["empty"].mkdir()
    files["bad"].write_bytes(b"not a png")
    files["text"].write_text("a line\n")
    files["latin1"].write_bytes("caf\xe9\n".encode("latin-1"))
    files["blank"].write_text("\n  \n")
    out = tmp_path / "out"
    argv = [a.format(**files) for a in arguments] + ["--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("transformer-visualizer: error: "), err
    import re

    assert re.search(pattern, err[0]), err[0]
    assert not out.exists()


def test_only_rank_0_reports_under_torchrun(tmp_path, monkeypatch, capsys):
    from visualizer import cli

    monkeypatch.setenv("RANK", "1")
    cli.report_written([], tmp_path)  # another rank wrote nothing: it says nothing
    assert capsys.readouterr().out == ""
    monkeypatch.setenv("RANK", "0")
    cli.report_written([], tmp_path)
    assert "Wrote 0 files" in capsys.readouterr().out
