"""The ``lm`` command: a causal LM's attention over a prompt and a generation, and one line per bad input."""

import json

import numpy as np
import pytest
import torch

from visualizer.cli import main

FILES = [
    "faithfulness.png",
    "heads.png",
    "model_view.html",
    "relevance.png",
    "stats.json",
    "text_view.html",
    "tokens.png",
]
PROMPT = "The cat sat on the mat. The cat sat on the"


@pytest.fixture(scope="module")
def gpt2_folder(tmp_path_factory):
    """A random 2-layer GPT-2 with a byte-level BPE trained here, saved as a local model folder (no hub)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    bpe.train_from_iterator(["The cat sat on the mat. The dog lay on the log.\nA bird sang."] * 8, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>")
    torch.manual_seed(0)
    config = GPT2Config(
        n_layer=2,
        n_head=4,
        n_embd=32,
        vocab_size=len(tokenizer),
        n_positions=128,
        eos_token_id=0,
        bos_token_id=0,
    )
    folder = tmp_path_factory.mktemp("models") / "tiny-gpt2"
    GPT2LMHeadModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def eager(folder):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(folder, attn_implementation="eager").eval()
    return model, AutoTokenizer.from_pretrained(folder)


def entropies(attn: torch.Tensor) -> np.ndarray:
    """Mean row entropy per head of a (1, heads, T, T) map, written out here."""
    p = attn[0].double()
    return (-(p * torch.log(p.clamp_min(1e-300))).sum(-1) * (p > 0).any(-1)).mean(-1).numpy()


def test_a_prompt_and_a_generation_write_every_file_with_the_eager_models_weights(gpt2_folder, tmp_path):
    out = tmp_path / "out"
    assert main(["lm", PROMPT, "--model", str(gpt2_folder), "--generate", "6", "--out", str(out)]) == 0
    folder = out / "prompt-1"
    assert sorted(p.name for p in folder.iterdir()) == sorted([*FILES, "generation.png"])
    stats = json.loads((folder / "stats.json").read_text())
    model, tokenizer = eager(gpt2_folder)
    prompt = tokenizer(PROMPT, return_tensors="pt")["input_ids"]
    assert stats["prompt_tokens"] == prompt.shape[1] and stats["generated_tokens"] == 6
    with torch.no_grad():
        expected = model.generate(prompt, max_new_tokens=6, min_new_tokens=6, do_sample=False, pad_token_id=0)
    assert stats["tokens"] == tokenizer.convert_ids_to_tokens(expected[0])
    # The stitched run is causal attention over the tokens fed back: an eager forward over them.
    fed = expected[:, :-1]
    with torch.no_grad():
        attentions = model(fed, output_attentions=True).attentions
    for layer, row in enumerate(stats["entropy_per_head"]):
        np.testing.assert_allclose(row, entropies(attentions[layer]), atol=2e-4)
    detail = attentions[-1][0].mean(0)  # --layer defaults to the last layer for a causal LM
    for pair in stats["top_pairs_layer_1"]:
        assert pair["key_index"] <= pair["query_index"]
    assert stats["text"] == tokenizer.decode(expected[0])
    assert detail.shape[0] == fed.shape[1]
    for name in ("model_view.html", "text_view.html"):
        assert (folder / name).read_text().startswith("<!DOCTYPE html>")


def test_without_generate_the_prompt_alone_is_shown_and_layers_heads_are_kept(gpt2_folder, tmp_path):
    out = tmp_path / "out"
    args = [
        "lm",
        "a bird sang",
        "--model",
        str(gpt2_folder),
        "--layers",
        "1",
        "--heads",
        "0,2",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    folder = out / "prompt-1"
    assert sorted(p.name for p in folder.iterdir()) == FILES
    stats = json.loads((folder / "stats.json").read_text())
    assert stats["generated_tokens"] == 0 and len(stats["entropy_per_head"]) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["lm", "   "], "prompt 1 is empty"),
        (["lm", "--generate", "-1"], "--generate -1: give a number of tokens from 0 to 4096"),
        (["lm", "--random-weights"], "--random-weights goes with --model NAME"),
        (["lm", "--generate", "x"], "invalid int value: 'x'"),
    ],
)
def test_bad_options_are_one_line_before_any_model_loads(args, message, tmp_path, capsys, monkeypatch):
    import visualizer.models

    def no_load(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(visualizer.models, "load_causal_lm", no_load)
    out = tmp_path / "out"
    try:
        status = main([*args, "--out", str(out)])
    except SystemExit as exit:  # argparse's own errors
        status = exit.code
    assert status == 2
    assert message in capsys.readouterr().err
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--layer", "2"], "--layer: layer 2 is out of range"),
        (["--layers", "0,5"], "--layers: layer 5 is out of range"),
        (["--heads", "4"], "--heads: head 4 is out of range"),
        (["--generate", "200"], "more than the model's 128 positions"),
    ],
)
def test_options_the_model_refuses_are_one_line_and_nothing_is_written(
    gpt2_folder, option, message, tmp_path, capsys
):
    out = tmp_path / "out"
    assert main(["lm", PROMPT, "--model", str(gpt2_folder), *option, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1] and err[-1].startswith("transformer-visualizer: error: ")
    assert not out.exists() or not any(out.rglob("*.*"))


def test_a_model_that_is_not_a_causal_lm_is_one_line(tmp_path, capsys):
    from transformers import DistilBertConfig, DistilBertModel

    folder = tmp_path / "distilbert"
    config = DistilBertConfig(dim=16, n_layers=1, n_heads=2, hidden_dim=16)
    DistilBertModel(config).save_pretrained(folder)
    assert main(["lm", "hi", "--model", str(folder), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "unknown or unavailable model" in err and "is not a causal language model" in err


def test_the_default_is_the_induction_demos_example_and_what_it_generates(tmp_path):
    """No --model: the demo (trained once into the user cache, as the main job does), its example cut six
    tokens short, greedy decoding, and in stats.json the heads' scores, how the example was chosen and
    whether the generation finished the copy (a report, compared with the tokens, not asserted true)."""
    from visualizer.demos import load_induction_demo
    from visualizer.demos.induction import EXAMPLE_MARGIN

    out = tmp_path / "out"
    assert main(["lm", "--generate", "6", "--out", str(out)]) == 0
    folder = out / "prompt-1"
    assert sorted(p.name for p in folder.iterdir()) == sorted([*FILES, "generation.png", "head_effects.png"])
    stats = json.loads((folder / "stats.json").read_text())
    demo = load_induction_demo()
    example = demo.example()
    sequence = example.ids
    assert stats["prompt_tokens"] == sequence.shape[1] - 6 and stats["generated_tokens"] == 6
    assert stats["tokens"][: stats["prompt_tokens"]] == demo.tokens(sequence[0])[: stats["prompt_tokens"]]
    finished = stats["tokens"] == demo.tokens(sequence[0])
    assert stats["generated_matches_the_copy"] is finished
    assert (
        stats["example"]["index"] == example.index
        and "first of demo.sequences(256)" in stats["example"]["rule"]
    )
    assert stats["example"]["copy_margin"] == pytest.approx(example.margin, abs=1e-4)
    assert stats["example"]["held_out_exact_copy_rate"] == pytest.approx(example.copy_rate, abs=1e-4)
    if example.margin >= EXAMPLE_MARGIN:  # the rule's promise: a clear margin, so greedy decoding copies
        assert finished
    scores = demo.scores(sequence)
    np.testing.assert_allclose(stats["induction_score"], scores["induction"], atol=1e-4)
    assert stats["scores_on"] == demo.tokens(sequence[0])
    # the heads the pattern calls induction heads, ablated, take the copy away (margins: tests/demos)
    accuracy = stats["copy_accuracy"]
    assert accuracy["induction_heads"] == demo.induction_heads()
    assert accuracy["induction_heads_ablated"] < 0.5 * accuracy["clean"]
    effects = np.array(stats["head_effects"]["copy_loss_change"])
    assert effects.shape == (demo.settings.layers, demo.settings.heads)
    np.testing.assert_allclose(effects, demo.head_effects().values, atol=1e-4)


def test_a_demo_prompt_is_words_of_its_vocabulary(tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    assert main(["lm", "date jay toad date", "--generate", "2", "--out", str(out)]) == 0
    stats = json.loads((out / "prompt-1" / "stats.json").read_text())
    assert stats["tokens"][:4] == ["date", "jay", "toad", "date"] and stats["generated_tokens"] == 2
    assert "generated_matches_the_copy" not in stats
    import visualizer.demos

    def no_load(**kwargs):
        raise AssertionError("the demo was loaded before the prompt was checked")

    monkeypatch.setattr(visualizer.demos, "load_induction_demo", no_load)
    assert main(["lm", "date zebra-unknown", "--out", str(tmp_path / "other")]) == 2
    assert "the demo's vocabulary has no 'zebra-unknown'" in capsys.readouterr().err
