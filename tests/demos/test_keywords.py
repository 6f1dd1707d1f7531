"""The keyword demo: a small BERT trained here to classify sentences by their one keyword, the ground
truth that explanations of text are scored against; its weights are cached and checked when read back."""

import copy
import dataclasses
import json
import shutil
import warnings

import numpy as np
import pytest
import torch
from demos.damaged_cache import cache_folder, check_retrained, check_unwritable, damages

from visualizer.demos import KeywordDemo, KeywordSettings, Sentences, load_keyword_demo, train_keywords
from visualizer.demos import keywords as _keywords
from visualizer.demos._training import intra_op_threads
from visualizer.demos._truth import evidence_rank, pointing_game
from visualizer.models._cache import content_sha256, read_arrays

cache = cache_folder("keywords-cache")


@pytest.fixture(scope="module")
def demo(cache) -> KeywordDemo:
    """The default demo, trained once for this module and written to ``cache``."""
    return load_keyword_demo(seed=0)


@pytest.fixture(scope="module")
def batch(demo) -> Sentences:
    return demo.sentences(256)


@pytest.fixture
def no_training(monkeypatch):
    """Make any training fail, to prove a load came from the cache."""

    def refuse(*args, **kwargs):
        raise AssertionError("the demo was trained again")

    monkeypatch.setattr(_keywords, "train_keywords", refuse)


@pytest.fixture
def spy_training(monkeypatch, demo):
    """Record trainings and hand back the module's demo instead of training again."""
    calls = []

    def train(settings, **kwargs):
        calls.append(settings)
        return dataclasses.replace(demo, model=copy.deepcopy(demo.model), path=None)

    monkeypatch.setattr(_keywords, "train_keywords", train)
    return calls


def words_of(ids: torch.Tensor, mask: np.ndarray) -> list[int]:
    return ids[torch.from_numpy(mask)].tolist()


# --- the task ---------------------------------------------------------------------------------------


def test_sentences_hold_exactly_one_keyword_and_the_evidence_marks_it(demo, batch):
    s = demo.settings
    ids, mask = batch.inputs["input_ids"], batch.inputs["attention_mask"]
    assert ids.shape == mask.shape == batch.evidence.shape == batch.ignore.shape == (256, s.positions)
    assert ids.dtype == mask.dtype == batch.labels.dtype == torch.long
    assert batch.evidence.dtype == batch.ignore.dtype == np.bool_
    keywords = {token: label for label, tokens in enumerate(s.keyword_ids) for token in tokens}
    lengths = []
    for row in range(256):
        tokens = ids[row].tolist()
        words = int(mask[row].sum()) - 2
        lengths.append(words)
        assert s.min_words <= words <= s.max_words
        assert tokens[0] == 1 and tokens[words + 1] == 2 and set(tokens[words + 2 :]) <= {0}  # CLS, SEP, PAD
        assert mask[row].tolist() == [1] * (words + 2) + [0] * (s.positions - words - 2)
        found = [place for place, token in enumerate(tokens) if token in keywords]
        assert found == batch.evidence[row].nonzero()[0].tolist() and len(found) == 1, tokens
        assert keywords[tokens[found[0]]] == int(batch.labels[row])
        assert batch.ignore[row].tolist() == [place == 0 or place > words for place in range(s.positions)]
    assert set(lengths) == set(range(s.min_words, s.max_words + 1))
    places = batch.evidence.argmax(1)
    assert places.min() == 1 and places.max() == s.max_words  # the keyword goes anywhere
    assert set(batch.labels.tolist()) == set(range(s.labels))
    again, other = demo.sentences(256), demo.sentences(256, seed=1)
    assert torch.equal(again.inputs["input_ids"], ids) and not torch.equal(other.inputs["input_ids"], ids)


def test_fillers_and_distractors_carry_no_label(demo):
    """Each distractor and filler occurs about as often under every label, and a sentence holds one or
    more distractors as a rule: no word but the keyword says anything about the label."""
    s = demo.settings
    sample = demo.sentences(4096, seed=5)
    ids, labels = sample.inputs["input_ids"], sample.labels
    words = ~sample.ignore & ~sample.evidence
    rates = []
    for label in range(s.labels):
        rows = (labels == label).numpy()
        counts = np.bincount(ids.numpy()[rows][words[rows]], minlength=s.vocab_size)
        rates.append(counts / counts.sum())
    by_label = np.array(rates)[:, list(s.distractor_ids) + list(s.filler_ids)]
    assert np.abs(by_label - by_label.mean(0)).max() < 0.01, by_label  # 0.004 at most
    per_sentence = np.isin(ids.numpy(), s.distractor_ids).sum(1)
    assert 0.8 <= per_sentence.mean() <= 3.0 and (per_sentence > 0).mean() > 0.6


def test_it_classifies_held_out_sentences(demo, batch):
    assert not demo.model.training
    assert demo.accuracy(batch) >= 0.95  # 1.0 over seeds 0-11 (1,024 sentences)
    assert demo.accuracy() == demo.accuracy(demo.sentences(256))
    assert demo.accuracy(demo.sentences(256, seed=9)) >= 0.95
    assert len(demo.losses) == demo.settings.steps and np.mean(demo.losses[-20:]) < 0.1 < demo.losses[0]
    logits = demo.logits(batch.inputs)
    assert logits.shape == (256, demo.settings.labels) and torch.equal(
        demo.predict(batch.inputs), logits.argmax(1)
    )


def test_the_keyword_decides_the_label(demo, batch):
    """Swapping the keyword for one of another label moves the prediction to that label; swapping every
    other word for other fillers and distractors leaves it."""
    s = demo.settings
    ids = batch.inputs["input_ids"].clone()
    place = torch.from_numpy(batch.evidence)
    swapped_labels = (batch.labels + 1) % s.labels
    ids[place] = torch.tensor(s.keyword_ids)[swapped_labels, -1]
    swapped = {**batch.inputs, "input_ids": ids}
    assert (demo.predict(swapped) == swapped_labels).float().mean() >= 0.9
    rest = demo.sentences(256, seed=17)  # other words, the same lengths only where they agree
    ids = batch.inputs["input_ids"].clone()
    others = torch.from_numpy(~batch.ignore & ~batch.evidence & ~rest.ignore & ~rest.evidence)
    ids[others] = rest.inputs["input_ids"][others]
    assert others.sum() > 1000
    changed = {**batch.inputs, "input_ids": ids}
    assert (demo.predict(changed) == batch.labels).float().mean() >= 0.95


def test_encode_tokens_and_vocabulary(demo):
    s = demo.settings
    names = _keywords.vocabulary(s)
    assert len(names) == len(set(names)) == s.vocab_size
    assert demo.classes == ["sport", "weather", "food", "music"]
    assert demo.keywords == {c: [names[i] for i in ids] for c, ids in zip(demo.classes, s.keyword_ids)}
    inputs = demo.encode(["the goal was on the road", "snow"])
    assert demo.tokens(inputs["input_ids"][0])[:8] == [
        "[CLS]",
        "the",
        "goal",
        "was",
        "on",
        "the",
        "road",
        "[SEP]",
    ]
    assert inputs["attention_mask"].sum(1).tolist() == [8, 3]
    assert demo.encode("snow")["input_ids"].tolist() == inputs["input_ids"][1:].tolist()
    for label, name in enumerate(demo.classes):
        for keyword in demo.keywords[name]:
            assert demo.predict(demo.encode(f"the lamp was {keyword} and the ball")).item() == label
    batch = demo.sentences(2)
    assert demo.tokens(batch.inputs["input_ids"]) == [demo.tokens(row) for row in batch.inputs["input_ids"]]
    bigger = KeywordSettings(labels=8, keywords_per_label=5, distractors=20, fillers=40)
    more = _keywords.vocabulary(bigger)
    assert len(more) == len(set(more)) == bigger.vocab_size and "kw7.4" in more
    assert _keywords.class_names(bigger)[-1] == "class7"


# --- explanations against the ground truth ----------------------------------------------------------


@pytest.mark.parametrize(
    "method, pointing, rank",
    [
        # Seed 0 on 256 held-out sentences: pointing game 0.83, mean keyword rank 0.9; random scores
        # 0.13-0.18 and 3.7-3.8 (chance: 1 / words, 0.15 on average). The same to three decimals on 2
        # threads, deterministic and with the weights nudged by one float step
        # (benchmarks/demo_spread.py). Other seeds differ more (0.47-1.0 over seeds 0-11): this
        # bar holds seed 0 to its numbers with room for rounding, not every seed.
        ("attention_grad", 0.6, 2.0),
        # attnlrp finds the keyword on every seed measured (0.996-1.0 over seeds 0-3, rank <= 0.01).
        # (input x gradient, signed, puts the keyword first or last: 0.07-0.75 over draws; no bar.)
        ("attnlrp", 0.9, 0.5),
    ],
)
def test_explanations_point_at_the_keyword(demo, method, pointing, rank):
    """The top word (CLS, SEP and padding left out) is the keyword far more often than by chance."""
    from visualizer import explain

    batch = demo.sentences(128)
    scores = demo.relevance(method, batch)
    assert pointing_game(scores, batch.evidence, ignore=batch.ignore) >= pointing
    if rank is not None:
        assert evidence_rank(scores, batch.evidence, ignore=batch.ignore).mean() <= rank
    words = (~batch.ignore).sum(1)
    assert pointing >= 2 * np.mean(1 / words)  # the bars are well above chance
    # The rows of one label are explain()'s own scores for that logit, from [CLS].
    rows = (batch.labels == 2).nonzero().flatten()
    with intra_op_threads(1):
        relevance = explain(demo.model, {k: v[rows] for k, v in batch.inputs.items()}, 2, method=method)
    assert relevance.position == 0 and relevance.method == method
    np.testing.assert_allclose(scores[rows.numpy()], relevance.scores.double().numpy(), rtol=1e-5, atol=1e-7)


def test_ground_truth_scores_tell_a_method_from_random(demo):
    batch = demo.sentences(64)
    found = demo.ground_truth_scores("attnlrp", 64, faithfulness_steps=4)  # (robust across seeds)
    chance = demo.ground_truth_scores("random", 64, faithfulness_steps=4)
    keys = {
        "pointing_game",
        "evidence_rank",
        "map",
        "miou",
        "pixel_accuracy",
        "auc_most_relevant_first",
        "auc_least_relevant_first",
        "auc_random",
        "auc_difference",
        "accuracy",
    }
    assert set(found) == set(chance) == keys and all(isinstance(v, float) for v in found.values())
    scores = demo.relevance("attnlrp", batch)
    assert found["pointing_game"] == pointing_game(scores, batch.evidence, ignore=batch.ignore)
    assert found["accuracy"] == demo.accuracy(batch)
    random = demo.relevance("random", batch)
    assert chance["pointing_game"] == pointing_game(random, batch.evidence, ignore=batch.ignore)
    # Random scores point at the keyword about as often as chance: 1 / words on average.
    many = demo.sentences(2048, seed=3)
    random = demo.relevance("random", many)
    chance_level = np.mean(1 / (~many.ignore).sum(1))  # 0.15
    assert abs(pointing_game(random, many.evidence, ignore=many.ignore) - chance_level) < 0.04  # sd 0.008
    assert found["pointing_game"] > chance["pointing_game"] + 0.3
    assert found["map"] > chance["map"] + 0.2 and found["evidence_rank"] < chance["evidence_rank"] - 1
    # Removing the keyword first takes the label's logit away; removing it last keeps it.
    assert found["auc_difference"] > 1.0 and abs(chance["auc_difference"]) < found["auc_difference"] / 2
    assert found["auc_most_relevant_first"] < found["auc_random"] < found["auc_least_relevant_first"]
    assert found["auc_random"] == pytest.approx(chance["auc_random"])  # the same random orders


# --- bad inputs -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda d: d.sentences(0), ValueError, "count must be at least 1"),
        (lambda d: d.sentences(2, seed=1.5), TypeError, "seed must be an int"),
        (lambda d: d.tokens(torch.zeros(3)), TypeError, "integer torch tensor of token ids"),
        (lambda d: d.tokens([1, 2]), TypeError, "got list"),
        (lambda d: d.tokens(torch.tensor([99])), ValueError, r"\[0, 48\).*from 99 to 99"),
        (lambda d: d.tokens(torch.ones(1, 17, dtype=torch.long)), ValueError, "16 positions"),
        (lambda d: d.predict(torch.ones(2, 5, dtype=torch.long)), TypeError, "dict of input_ids"),
        (
            lambda d: d.predict({"input_ids": torch.ones(2, 5, dtype=torch.long)}),
            TypeError,
            r"\['input_ids'\]",
        ),
        (
            lambda d: d.predict(
                {"input_ids": torch.ones(5, dtype=torch.long), "attention_mask": torch.ones(5)}
            ),
            ValueError,
            r"\(batch, length\).*x\[None\]",
        ),
        (
            lambda d: d.predict(
                {"input_ids": torch.ones(2, 5, dtype=torch.long), "attention_mask": torch.ones(2)}
            ),
            ValueError,
            r"attention_mask must be a tensor of input_ids' shape \(2, 5\)",
        ),
        (lambda d: d.accuracy(d.sentences(2).inputs), TypeError, "must be a Sentences"),
        (
            lambda d: d.encode("the goal was a football"),
            ValueError,
            "'football' is not one of the demo's words",
        ),
        (lambda d: d.encode(" ".join(["the"] * 15)), ValueError, "1 to max_words = 14 words, got 15"),
        (lambda d: d.encode(""), ValueError, "1 to max_words = 14 words, got 0"),
        (lambda d: d.encode([]), TypeError, "non-empty list of strings"),
        (lambda d: d.encode(["snow", 3]), TypeError, "non-empty list of strings"),
        (lambda d: d.relevance("gradcam"), ValueError, r"method must be one of attention_grad.* or 'random'"),
        (lambda d: d.relevance(None), ValueError, "method must be one of"),
        (lambda d: d.relevance("random", threads=0), ValueError, "threads must be a positive int"),
        (lambda d: d.ground_truth_scores("random", count=0), ValueError, "count must be at least 1"),
        (lambda d: d.ground_truth_scores("random", faithfulness_steps=0), ValueError, "faithfulness_steps"),
        (lambda d: d.ground_truth_scores("lime"), ValueError, "method must be one of"),
    ],
)
def test_demo_methods_reject_bad_arguments(demo, call, error, message):
    with pytest.raises(error, match=message):
        call(demo)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"steps": -1}, ValueError, "steps must be at least 0, got -1"),
        ({"steps": 1.5}, TypeError, "steps must be an int, got float"),
        ({"labels": 1}, ValueError, "labels must be at least 2"),
        ({"max_words": True}, TypeError, "max_words must be an int, got bool"),
        ({"min_words": 9, "max_words": 8}, ValueError, r"min_words \(9\) must be at most max_words \(8\)"),
        ({"hidden_size": 33}, ValueError, r"hidden_size \(33\) must be divisible by heads \(2\)"),
        ({"distractor_rate": 1.5}, ValueError, "distractor_rate must be a probability"),
        (
            {"distractors": 0},
            ValueError,
            "there are no distractors: set distractors >= 1 or distractor_rate=0",
        ),
        ({"lr": 0}, ValueError, "lr must be a positive finite number"),
        ({"lr": float("inf")}, ValueError, "lr must be a positive finite number"),
        ({"seed": "0"}, TypeError, "seed must be an int"),
        ({"threads": 0}, ValueError, "threads must be a positive int or None"),
        ({"progress": "tqdm"}, TypeError, r"progress must be a callable progress\(step, loss\)"),
        ({"colour": 1}, TypeError, "unexpected keyword argument 'colour'"),
    ],
)
def test_bad_settings_are_refused_before_training(kwargs, error, message):
    for function in (train_keywords, load_keyword_demo):
        with pytest.raises(error, match=message):
            function(**kwargs)
    with pytest.raises(TypeError, match="settings must be a KeywordSettings or None, got dict"):
        train_keywords({"seed": 1})


# --- training ---------------------------------------------------------------------------------------


def test_same_seed_same_weights_and_callers_state_untouched():
    torch.manual_seed(123)
    rng_before, threads_before = torch.random.get_rng_state(), torch.get_num_threads()
    settings = KeywordSettings(steps=5, hidden_size=8, layers=1)
    calls = []
    first = train_keywords(settings, progress=lambda *c: calls.append(c))
    second, other = train_keywords(settings), train_keywords(settings, seed=1)
    assert torch.equal(torch.random.get_rng_state(), rng_before)
    assert torch.get_num_threads() == threads_before and first.threads == 1
    assert calls == list(enumerate(first.losses, start=1))
    assert len(first.losses) == 5 and first.losses == second.losses != other.losses
    assert other.settings == dataclasses.replace(settings, seed=1)
    for (name, weight), again in zip(first.model.state_dict().items(), second.model.state_dict().values()):
        assert torch.equal(weight, again), name
    config = first.model.config
    assert (config.num_hidden_layers, config.hidden_size, config.pad_token_id, config.num_labels) == (
        1,
        8,
        0,
        4,
    )
    assert config.hidden_dropout_prob == config.attention_probs_dropout_prob == 0
    assert first.model.config._attn_implementation == "sdpa"


# --- the cache --------------------------------------------------------------------------------------


def test_cache_file_holds_settings_versions_and_a_hash_of_its_tensors(demo, cache):
    import transformers

    path = _keywords.cache_path(demo.settings)
    assert demo.path == path and path.parent == cache and path.is_file()
    arrays, metadata = read_arrays(path)
    assert metadata["content_sha256"] == content_sha256(arrays)
    assert metadata["torch"] == torch.__version__ and metadata["transformers"] == transformers.__version__
    assert KeywordSettings(**json.loads(metadata["settings"])) == demo.settings
    assert sorted(arrays) == sorted(demo.model.state_dict())
    assert _keywords.cache_path(dataclasses.replace(demo.settings, seed=1)) != path


def test_a_second_load_reads_the_cache_and_gives_the_same_logits(demo, batch, no_training):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = load_keyword_demo(seed=0)
        same = load_keyword_demo(KeywordSettings())
    assert again.model is not demo.model and again.settings == demo.settings == same.settings
    assert again.losses == demo.losses and again.seconds == demo.seconds
    assert torch.equal(again.logits(batch.inputs), demo.logits(batch.inputs))


@pytest.mark.parametrize("damage, why", damages("classifier.weight", "transformers", "parameters"))
def test_a_damaged_cache_is_trained_again_with_a_warning(
    damage, why, monkeypatch, tmp_path, cache, demo, spy_training
):
    monkeypatch.setenv("VISUALIZER_CACHE", str(tmp_path))
    path = _keywords.cache_path(demo.settings)
    shutil.copyfile(cache / path.name, path)
    check_retrained(
        damage, why, "keyword", cache=_keywords._CACHE, settings=demo.settings, load=load_keyword_demo
    )
    assert spy_training == [demo.settings]


def test_an_unwritable_cache_warns_and_still_returns_the_demo(monkeypatch, tmp_path, spy_training):
    check_unwritable(monkeypatch, tmp_path, "keyword", load_keyword_demo)
    assert len(spy_training) == 1
