"""``--explain METHOD``: relevance.png, faithfulness.png and the scores in stats.json per input, the
target each command explains, the main job's one explained input, and one line per bad value
before any model loads."""

import json
import re
import sys

import numpy as np
import pytest
import torch

import visualizer.demos
import visualizer.models
from visualizer import explain
from visualizer.cli import main
from visualizer.cli._explain import embedding_target, explain_input, top_class
from visualizer.cli._outputs import Outputs
from visualizer.relevance import METHODS

VIT = ["vit", "--model", "vit_tiny_patch16_224", "--random-weights", "--size", "32"]
EXPLAINED = {"relevance.png", "faithfulness.png"}


@pytest.fixture(scope="module")
def picture(tmp_path_factory):
    from PIL import Image

    path = tmp_path_factory.mktemp("pictures") / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def bert_folder(tmp_path_factory):
    """A random BERT (no classifier) saved with MiniLM's tokenizer, as a local model folder."""
    from transformers import BertConfig, BertModel

    from visualizer.models._bert import minilm_folder

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("models") / "tiny-bert"
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4)
    BertModel(config).save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        (folder / name).write_bytes((minilm_folder() / name).read_bytes())
    return folder


def read_stats(folder):
    return json.loads((folder / "stats.json").read_text(encoding="utf-8"))


def check_faithfulness(entry):
    check = entry["faithfulness"]
    assert set(check["auc"]) == {"most_relevant_first", "least_relevant_first", "random"}
    auc = check["auc"]
    assert check["difference"] == pytest.approx(
        auc["least_relevant_first"] - auc["most_relevant_first"], abs=1e-4
    )
    assert (check["steps"], check["random_orders"]) == (10, 2)


def test_vit_explains_the_top_class_over_the_patches(picture, tmp_path):
    out = tmp_path / "out"
    assert main([*VIT, str(picture), "--out", str(out)]) == 0  # attention_grad: the default
    folder = out / "photo"
    assert EXPLAINED <= {p.name for p in folder.iterdir()}
    stats = read_stats(folder)
    entry = stats["relevance"]
    assert entry["method"] == "attention_grad" and entry["position"] == 0
    assert len(entry["scores"]) == stats["prefix_tokens"] + stats["grid"][0] * stats["grid"][1] == 5
    assert isinstance(entry["target"], int) and "top predicted class" in entry["target_rule"]
    check_faithfulness(entry)


def test_bert_explains_a_sentence_embedding_along_the_unperturbed_one(bert_folder, tmp_path):
    out = tmp_path / "out"
    text = "The cat sat on the mat."
    args = ["bert", text, "--model", str(bert_folder), "--explain", "input_x_gradient", "--out", str(out)]
    assert main(args) == 0
    stats = read_stats(out / "text-1")
    entry = stats["relevance"]
    assert entry["method"] == "input_x_gradient"
    assert entry["tokens"] == stats["tokens"] and len(entry["scores"]) == len(stats["tokens"])
    assert entry["target"] == "the embedding along the unperturbed text's"
    assert entry["target_value"] > 0  # the embedding's length: its projection on its own direction
    assert any(abs(score) > 1e-6 for score in entry["scores"])  # a gradient, not rounding noise
    check_faithfulness(entry)


def test_an_embedding_target_has_the_gradient_the_cosine_lacks():
    """At the unperturbed input the cosine with itself is at its maximum: its gradient is 0, so a
    gradient method scores noise; the projection on the unperturbed direction does not."""
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, depth=2, num_classes=0)
    pixels = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        reference = model.eval()(pixels)
    target = embedding_target(reference, lambda out: out, "image").value
    assert target(reference).item() == pytest.approx(reference.norm().item(), rel=1e-5)
    along = explain(model, pixels, target).scores[0, 1:]  # attention_grad, the patches
    cosine = explain(model, pixels, lambda out: torch.cosine_similarity(out, reference)).scores[0, 1:]
    assert along.min() > 1000 * cosine.abs().max()


def test_lm_explains_the_next_token_of_the_induction_demo(tmp_path):
    """The demo copies: after `... a b ... a` it predicts `b`, and the token that drove it is `b`'s
    earlier copy, the token after the earlier `a` (the query itself aside)."""
    out = tmp_path / "out"
    assert main(["lm", "--out", str(out)]) == 0
    entry = read_stats(out / "prompt-1")["relevance"]
    demo = visualizer.demos.load_induction_demo()
    prompt = demo.example().ids
    with torch.no_grad():
        predicted = int(demo.model(prompt).logits[0, -1].argmax())
    length = prompt.shape[1]
    assert entry["target"] == predicted and entry["position"] == length - 1
    assert len(entry["scores"]) == len(entry["tokens"]) == length
    ids = prompt[0].tolist()
    earlier = max(i for i in range(length - 1) if ids[i] == ids[-1])
    scores = entry["scores"][:-1]
    assert scores.index(max(scores)) == earlier + 1 and ids[earlier + 1] == predicted
    check_faithfulness(entry)


@pytest.mark.parametrize("method", METHODS)
def test_every_method_writes_its_files(method, tmp_path):
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, depth=2, num_classes=4)
    pixels = torch.randn(1, 3, 32, 32)
    outputs = Outputs(tmp_path)
    folder = outputs.folder("photo")
    with torch.no_grad():
        target = top_class(model.eval()(pixels))
    shown = np.zeros((32, 32, 3), dtype=np.uint8)
    entry = explain_input(outputs, folder, model, pixels, target, method, label="tiny", image=shown)
    assert entry["method"] == method and len(entry["scores"]) == 5
    np.testing.assert_allclose(
        entry["scores"], explain(model, pixels, target.value, method=method).scores[0], rtol=1e-5
    )
    assert {p.name for p in folder.iterdir()} == EXPLAINED


def test_none_explains_nothing(picture, tmp_path):
    out = tmp_path / "out"
    assert main([*VIT, str(picture), "--explain", "none", "--out", str(out)]) == 0
    assert not EXPLAINED & {p.name for p in (out / "photo").iterdir()}
    assert "relevance" not in read_stats(out / "photo")


@pytest.fixture
def no_model(monkeypatch):
    """Every model loader of the command line refuses to run."""

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded")

    for name in ("load_vit", "load_bert", "load_causal_lm"):
        monkeypatch.setattr(visualizer.models, name, refuse)
    monkeypatch.setattr(visualizer.demos, "load_induction_demo", refuse)


@pytest.mark.parametrize("command", [[*VIT, "PICTURE"], ["bert", "hi"], ["lm"]], ids=["vit", "bert", "lm"])
@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("nonsense", r"--explain 'nonsense' is not a relevance method; use one of attention_grad, .*or none"),
        ("Rollout", r"is not a relevance method \(did you mean rollout\?\)"),
        ("", r"--explain '' is not a relevance method"),
    ],
)
def test_a_bad_method_is_one_line_before_any_model_loads(
    command, value, message, picture, no_model, tmp_path, capsys
):
    command = [str(picture) if arg == "PICTURE" else arg for arg in command]
    out = tmp_path / "out"
    assert main([*command, "--explain", value, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("transformer-visualizer: error: ")
    assert re.search(message, err[0]), err
    assert not out.exists()


def test_integrated_gradients_without_captum_is_one_line_before_any_model_loads(
    picture, no_model, monkeypatch, tmp_path, capsys
):
    for name in ("captum", "captum.attr"):
        monkeypatch.setitem(sys.modules, name, None)  # import captum: ImportError
    out = tmp_path / "out"
    assert main([*VIT, str(picture), "--explain", "integrated_gradients", "--out", str(out)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "--explain integrated_gradients needs captum" in line and "[relevance]" in line
    assert not out.exists()


def test_the_main_job_explains_the_demo_alone(monkeypatch, tmp_path, capsys):
    from visualizer.cli import _bert, _lm, _vit

    seen = {}

    def recorder(module):
        def run(args, outputs):
            seen[module.__name__] = args.explain
            return []

        return run

    for module in (_vit, _bert, _lm):
        monkeypatch.setattr(module, "run", recorder(module))
    assert main(["--out", str(tmp_path / "out")]) == 0
    assert seen == {
        "visualizer.cli._vit": "none",
        "visualizer.cli._bert": "none",
        "visualizer.cli._lm": "attention_grad",
    }
    assert "its next token explained with attention_grad" in capsys.readouterr().out


def test_help_lists_every_method(capsys):
    with pytest.raises(SystemExit):
        main(["bert", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"{', '.join(METHODS)}; or none to skip it (default: attention_grad)" in text
