"""A ground truth for text explanations: a small BERT classifier whose only evidence is one keyword.

>>> from visualizer.demos.keywords import load_keyword_demo
>>> demo = load_keyword_demo(seed=0)            # trained once (3-8 s on one core), then cached
>>> batch = demo.sentences(256)                 # held-out sentences, padded to one length
>>> batch.inputs["input_ids"].shape             # (256, 2 + max_words): [CLS] words [SEP] [PAD]...
torch.Size([256, 16])
>>> demo.tokens(batch.inputs["input_ids"][0])[:10]
['[CLS]', 'of', 'is', 'it', 'plate', 'of', 'an', 'a', 'goal', '[SEP]']
>>> demo.classes[int(batch.labels[0])], batch.evidence[0].nonzero()[0].tolist()
('sport', [8])
>>> demo.accuracy(batch)                        # held out
1.0
>>> demo.ground_truth_scores("attention_grad")  # where explain() points, against the keyword
{'pointing_game': 0.83..., 'evidence_rank': 0.88..., 'pixel_accuracy': 0.97..., 'miou': 0.89...,
 'map': 0.97..., 'auc_most_relevant_first': 0.04..., 'auc_least_relevant_first': 4.14...,
 'auc_random': 2.29..., 'auc_difference': 4.10..., 'accuracy': 1.0}

The task: a sentence is ``min_words`` to ``max_words`` words between ``[CLS]`` and ``[SEP]``,
padded with ``[PAD]`` (``attention_mask`` 0). Exactly one word is a **keyword**, at a random
place; its label (one of ``labels`` classes, ``keywords_per_label`` keywords each) is the
sentence's label. Every other word is a **filler** (function words: "the", "of", ...) or, with
probability ``distractor_rate``, a **distractor** (topical words: "ball", "cloud", ...). Fillers
and distractors are drawn independently of the label, so they carry no evidence; each
distractor is as frequent as a keyword or more, at any place, so "the topical word" is no
shortcut: the model has to learn which words decide. The ground truth of an explanation is the keyword's
position (``Sentences.evidence``); ``[CLS]``, ``[SEP]`` and the padding are left out of every
score (``Sentences.ignore``).

:meth:`KeywordDemo.ground_truth_scores` explains the held-out sentences with one method of
:func:`visualizer.explain` (the true label's logit, from ``[CLS]``), or with random scores,
and scores that against the keyword with :mod:`visualizer.demos._truth` (pointing game, rank
of the keyword, mAP) and :func:`visualizer.faithfulness` (tokens replaced by ``[PAD]``, the
model's pad token).

The model is transformers' ``BertForSequenceClassification`` built from a small
``BertConfig`` (2 layers, 2 heads, ``hidden_size`` 32, no dropout, sdpa attention), trained
from scratch with cross-entropy on the label, 300 steps of 64 sentences: 3-8 s on one
thread. Held-out accuracy is 100 % (1,024 sentences) for seeds 0-11.

What the methods find differs more from seed to seed than the accuracy does. Over seeds 0-3
(256 held-out sentences; chance is 1 / words, 0.15 on average): ``rollout`` and ``attnlrp``
point at the keyword in 0.97-1.00 of the sentences, ``integrated_gradients`` 0.76-1.00, the
last layer's ``attention`` 0.61-1.00, ``attention_grad`` 0.47-1.00 (0.83 for seed 0) and
``input_x_gradient`` 0.11-0.76 (0.55 for seed 0; its signed scores rank the keyword first or
last). Trained on two threads instead of one, seed 0 scores the same to three decimals.

Reproducibility: training runs on one intra-op thread by default (``threads=1``), the
weights are drawn under ``torch.random.fork_rng`` from ``torch.manual_seed(seed)`` and the
sentences from a ``torch.Generator`` seeded with ``seed``, so the same settings give the same
weights, bit for bit, on the same torch build, and the caller's random state is left alone.
Another processor trains weights that differ in the last bits; the tests assert accuracies
and scores with margins, never one sentence's exact scores.

Cache: :func:`load_keyword_demo` trains once and keeps the weights in the user cache
(:func:`visualizer.models._cache.cache_dir`, ``$VISUALIZER_CACHE``), named after a hash of
the settings. The file's metadata holds the settings, the torch and transformers versions it
was trained with and the sha256 of its tensors; a file that cannot be read, whose settings or
versions differ, whose tensors no longer match the hash, or that does not hold this model's
parameters is trained again and replaced, with a ``CaptureWarning``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from visualizer.demos._cached import DemoCache
from visualizer.demos._training import (
    check_int,
    check_ints,
    check_method,
    check_positive_numbers,
    check_run,
    check_token_ids,
    evaluating,
    intra_op_threads,
)

__all__ = [
    "KeywordDemo",
    "KeywordSettings",
    "Sentences",
    "load_keyword_demo",
    "train_keywords",
]

# The held-out stream is the same for every training seed, so models trained with different
# seeds are compared on the same sentences.
HELD_OUT_SEED = 2_718_281
#: Bump when training changes, so that caches written by older code are not reused.
TRAINER_VERSION = "1"
#: The special tokens, ids 0 to 3; ``[PAD]`` is the model's pad token, so faithfulness removes with it.
SPECIALS = ("[PAD]", "[CLS]", "[SEP]", "[MASK]")
#: Class names and their keywords; more labels or keywords than these are named ``class4``, ``kw4.0``.
CLASSES = ("sport", "weather", "food", "music", "travel", "health")
KEYWORDS = (
    ("goal", "match", "team", "coach"),
    ("rain", "snow", "storm", "fog"),
    ("bread", "soup", "cheese", "rice"),
    ("song", "drum", "piano", "choir"),
    ("train", "ticket", "hotel", "map"),
    ("doctor", "fever", "pill", "cough"),
)
#: Topical words that occur like keywords but decide nothing.
DISTRACTORS = "ball cloud plate note road nurse lamp coat door chair box card".split()
#: Function words: the rest of a sentence.
FILLERS = (
    "the a of and to in is it was on with for that this at by from as be or an are were "
    "but so then very quite just some any each"
).split()


class Sentences(NamedTuple):
    """What :meth:`KeywordDemo.sentences` returns: a batch of N sentences of T tokens."""

    inputs: dict  #: ``{"input_ids", "attention_mask"}``, each (N, T) int64: the model's keyword arguments
    labels: torch.Tensor  #: (N,) int64, the label of each sentence's keyword
    evidence: np.ndarray  #: (N, T) bool, True at the keyword: the ground truth
    ignore: np.ndarray  #: (N, T) bool, True at ``[CLS]``, ``[SEP]`` and padding: left out of scores


@dataclasses.dataclass(frozen=True)
class KeywordSettings:
    """The hyper-parameters of one training run; ``demo.settings``. Checked when built.

    >>> KeywordSettings().positions                       # [CLS] + max_words + [SEP]
    16
    >>> KeywordSettings().keyword_ids[1]                  # the keywords of label 1 (weather)
    (7, 8, 9)

    - ``labels``, ``keywords_per_label``: the classes and the keywords that decide each one.
    - ``distractors``, ``fillers``: how many words of each kind the vocabulary holds.
    - ``min_words``, ``max_words``: the sentence lengths, drawn uniformly, keyword included.
    - ``distractor_rate``: the chance that a word other than the keyword is a distractor.
    - ``hidden_size``, ``heads``, ``layers``: the ``BertConfig``'s ``hidden_size``,
      ``num_attention_heads`` and ``num_hidden_layers`` (``intermediate_size`` is 4 x hidden).
    """

    seed: int = 0
    steps: int = 300
    labels: int = 4
    keywords_per_label: int = 3
    distractors: int = 8
    fillers: int = 24
    min_words: int = 3
    max_words: int = 14
    distractor_rate: float = 0.25
    hidden_size: int = 32
    heads: int = 2
    layers: int = 2
    batch_size: int = 64
    lr: float = 3e-3

    def __post_init__(self) -> None:
        check_ints(
            self,
            {
                "seed": None,
                "steps": 0,
                "labels": 2,
                "keywords_per_label": 1,
                "distractors": 0,
                "fillers": 1,
                "min_words": 1,
                "max_words": 1,
                "hidden_size": 1,
                "heads": 1,
                "layers": 1,
                "batch_size": 1,
            },
        )
        if self.min_words > self.max_words:
            raise ValueError(f"min_words ({self.min_words}) must be at most max_words ({self.max_words})")
        if self.hidden_size % self.heads:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be divisible by heads ({self.heads}): "
                "each head gets hidden_size // heads dimensions"
            )
        rate = self.distractor_rate
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
            raise ValueError(f"distractor_rate must be a probability from 0 to 1, got {rate!r}")
        if rate > 0 and self.distractors == 0:
            raise ValueError(
                f"distractor_rate is {rate} but there are no distractors: set distractors >= 1 "
                "or distractor_rate=0"
            )
        check_positive_numbers(self, ["lr"])

    @property
    def positions(self) -> int:
        """The padded sentence length in tokens, and the model's ``max_position_embeddings``."""
        return self.max_words + 2

    @property
    def keyword_ids(self) -> tuple[tuple[int, ...], ...]:
        """The token ids of each label's keywords: (labels, keywords_per_label)."""
        k, first = self.keywords_per_label, len(SPECIALS)
        return tuple(tuple(range(first + label * k, first + (label + 1) * k)) for label in range(self.labels))

    @property
    def distractor_ids(self) -> tuple[int, ...]:
        first = len(SPECIALS) + self.labels * self.keywords_per_label
        return tuple(range(first, first + self.distractors))

    @property
    def filler_ids(self) -> tuple[int, ...]:
        first = len(SPECIALS) + self.labels * self.keywords_per_label + self.distractors
        return tuple(range(first, first + self.fillers))

    @property
    def vocab_size(self) -> int:
        return len(SPECIALS) + self.labels * self.keywords_per_label + self.distractors + self.fillers

    def config(self):
        """The ``transformers.BertConfig`` of the model: no dropout, ``[PAD]`` (id 0) the pad token."""
        from transformers import BertConfig

        return BertConfig(
            vocab_size=self.vocab_size,
            hidden_size=self.hidden_size,
            num_hidden_layers=self.layers,
            num_attention_heads=self.heads,
            intermediate_size=4 * self.hidden_size,
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
            classifier_dropout=0.0,
            max_position_embeddings=self.positions,
            type_vocab_size=1,
            pad_token_id=SPECIALS.index("[PAD]"),
            id2label=dict(enumerate(class_names(self))),
            label2id={name: label for label, name in enumerate(class_names(self))},
        )


@dataclasses.dataclass
class KeywordDemo:
    """A trained keyword classifier with its settings; made by ``train_keywords`` or ``load_keyword_demo``.

    - ``model``: the ``transformers.BertForSequenceClassification``, in eval mode, sdpa attention.
    - ``settings``: the ``KeywordSettings`` it was trained with.
    - ``losses``: the training loss after each step, ``steps`` floats (kept in the cache too).
    - ``seconds``: the training time in seconds (as measured when it was trained).
    - ``threads``: the torch intra-op thread count it was trained with.
    - ``path``: the cache file it was read from or written to, or None.
    """

    model: torch.nn.Module
    settings: KeywordSettings
    losses: list[float]
    seconds: float
    threads: int
    path: Path | None = None

    @property
    def classes(self) -> list[str]:
        """The class names, by label: ``['sport', 'weather', 'food', 'music']`` by default."""
        return class_names(self.settings)

    @property
    def keywords(self) -> dict[str, list[str]]:
        """Each class's keywords: ``{'sport': ['goal', 'match', 'team'], ...}``."""
        names = vocabulary(self.settings)
        return {name: [names[i] for i in ids] for name, ids in zip(self.classes, self.settings.keyword_ids)}

    def sentences(self, count: int = 256, seed: int = HELD_OUT_SEED) -> Sentences:
        """``count`` random sentences (see the module docstring) with their labels and ground truth.

        The same sentences for the same ``seed``; the default seed is a stream training never
        reads. Every batch is padded to ``settings.positions`` tokens.

        >>> batch = demo.sentences(2, seed=1)
        >>> batch.inputs["input_ids"].shape, batch.labels.shape, batch.evidence.shape
        (torch.Size([2, 16]), torch.Size([2]), (2, 16))
        """
        count = check_int(count, "count", 1)
        check_int(seed, "seed")
        return _sentences(self.settings, count, torch.Generator().manual_seed(int(seed)))

    def encode(self, texts: str | Sequence[str]) -> dict:
        """The model's inputs for sentences written out in the demo's words (without [CLS] and [SEP]).

        >>> inputs = demo.encode(["the goal was on the road", "snow"])
        >>> demo.predict(inputs)                          # sport, weather
        tensor([0, 1])
        """
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, Sequence) or not texts or not all(isinstance(t, str) for t in texts):
            raise TypeError("texts must be a string or a non-empty list of strings of the demo's words")
        names = vocabulary(self.settings)
        index = {word: token for token, word in enumerate(names) if word not in SPECIALS}
        s, rows = self.settings, []
        for text in texts:
            words = text.split()
            unknown = [word for word in words if word not in index]
            if unknown:
                raise ValueError(
                    f"{unknown[0]!r} is not one of the demo's words; it knows the keywords "
                    f"{sorted(w for ws in self.keywords.values() for w in ws)}, and the distractors and "
                    f"fillers of vocabulary(demo.settings)"
                )
            if not 1 <= len(words) <= s.max_words:
                raise ValueError(
                    f"a sentence holds 1 to max_words = {s.max_words} words, got {len(words)}: {text!r}"
                )
            rows.append([_CLS] + [index[word] for word in words] + [_SEP])
        ids = torch.full((len(rows), s.positions), _PAD)
        for row, tokens in enumerate(rows):
            ids[row, : len(tokens)] = torch.tensor(tokens)
        return {"input_ids": ids, "attention_mask": (ids != _PAD).long()}

    def tokens(self, ids) -> list:
        """Readable words of token ids: strings for (length,) ids, a list of lists for (batch, length).

        >>> demo.tokens(torch.tensor([1, 4, 2, 0]))
        ['[CLS]', 'goal', '[SEP]', '[PAD]']
        """
        ids = self._check_ids(ids, "ids", ndims=(1, 2))
        names = vocabulary(self.settings)
        if ids.ndim == 1:
            return [names[i] for i in ids.tolist()]
        return [[names[i] for i in row] for row in ids.tolist()]

    def logits(self, inputs) -> torch.Tensor:
        """The model's (N, labels) logits on ``inputs`` (``Sentences.inputs`` or :meth:`encode`'s).

        Run on one intra-op thread, restored after: the fastest for a model this small.
        """
        inputs = self._check_inputs(inputs)
        with evaluating(self.model), intra_op_threads(1):
            return self.model(**inputs).logits.float()

    def predict(self, inputs) -> torch.Tensor:
        """The predicted labels, (N,) int64."""
        return self.logits(inputs).argmax(-1)

    def accuracy(self, sentences: Sentences | None = None) -> float:
        """The share of ``sentences`` (default: ``sentences(256)``, held out) classified right.

        >>> demo.accuracy()
        1.0
        """
        batch = self.sentences(256) if sentences is None else self._check_sentences(sentences)
        return float((self.predict(batch.inputs) == batch.labels).float().mean())

    def relevance(
        self,
        method: str,
        sentences: Sentences | None = None,
        *,
        steps: int = 50,
        threads: int | None = 1,
    ) -> np.ndarray:
        """Relevance scores of every token for each sentence's true label: (N, T) float64.

        ``method``: one of :data:`visualizer.relevance.METHODS` (through :func:`visualizer.explain`,
        the true label's logit, from ``[CLS]``), or ``"random"``: uniform random scores from a fixed
        seed, the reference a method should beat. ``sentences``: default ``sentences(256)``.
        ``steps``: ``integrated_gradients``' steps. ``threads``: torch's intra-op threads for the
        run, restored after (None keeps them): one is the fastest for a model this small, and
        many times faster than two on a busy machine.

        >>> batch = demo.sentences(8)
        >>> demo.relevance("attention_grad", batch).shape
        (8, 16)
        """
        batch = self.sentences(256) if sentences is None else self._check_sentences(sentences)
        method = check_method(method)
        check_run(threads, None)
        if method == "random":
            generator = torch.Generator().manual_seed(0)
            shape = batch.evidence.shape
            return torch.rand(shape, generator=generator, dtype=torch.float64).numpy()
        from visualizer import explain

        scores = np.zeros(batch.evidence.shape, dtype=np.float64)
        with intra_op_threads(threads):
            for label, rows in self._by_label(batch):
                inputs = {name: value[rows] for name, value in batch.inputs.items()}
                relevance = explain(self.model, inputs, label, method=method, steps=steps)
                scores[rows.numpy()] = relevance.scores.double().numpy()
        return scores

    def ground_truth_scores(
        self,
        method: str,
        count: int = 256,
        *,
        seed: int = HELD_OUT_SEED,
        faithfulness_steps: int = 10,
        threads: int | None = 1,
    ) -> dict[str, float]:
        """How well ``method`` finds the keyword in ``count`` held-out sentences: one row of a table.

        ``method``: as :meth:`relevance` takes it (a method of ``explain``, or ``"random"``).
        The target is each sentence's true label's logit, explained from ``[CLS]``. ``[CLS]``,
        ``[SEP]`` and padding are left out of the first three scores:

        - ``pointing_game``: the share of sentences whose top token is the keyword (a random
          ranking scores 1 / words, 0.15 on average);
        - ``evidence_rank``: the keyword's mean rank among the words, 0 = top;
        - ``map``, ``miou``, ``pixel_accuracy``: :func:`visualizer.demos._truth.segmentation_scores`
          over tokens (mean average precision; Chefer et al.'s thresholded scores);
        - ``auc_most_relevant_first``, ``auc_least_relevant_first``, ``auc_random``: the mean
          area under :func:`visualizer.faithfulness`'s curves of the true logit as tokens are
          replaced by ``[PAD]`` (``faithfulness_steps`` steps); ``auc_difference``: least minus
          most relevant first, larger is better;
        - ``accuracy``: the model's accuracy on these sentences.

        ``threads`` as for :meth:`relevance`.

        >>> demo.ground_truth_scores("random")["pointing_game"]
        0.18...
        """
        from visualizer import faithfulness
        from visualizer.demos._truth import evidence_rank, pointing_game, segmentation_scores

        method = check_method(method)
        batch = self.sentences(check_int(count, "count", 1), seed)
        steps = check_int(faithfulness_steps, "faithfulness_steps", 1)
        scores = self.relevance(method, batch, threads=threads)
        result = {
            "pointing_game": float(pointing_game(scores, batch.evidence, ignore=batch.ignore)),
            "evidence_rank": float(np.mean(evidence_rank(scores, batch.evidence, ignore=batch.ignore))),
        }
        segmentation = segmentation_scores(scores, batch.evidence, ignore=batch.ignore)
        result.update({name: float(value) for name, value in segmentation.items()})
        areas: dict[str, list[np.ndarray]] = {}
        with intra_op_threads(threads):
            for label, rows in self._by_label(batch):
                inputs = {name: value[rows] for name, value in batch.inputs.items()}
                check = faithfulness(
                    self.model,
                    inputs,
                    torch.from_numpy(scores[rows.numpy()]).float(),
                    label,
                    position=0,
                    steps=steps,
                )
                for order, auc in check.auc.items():
                    areas.setdefault(order, []).append(auc)
        for order, parts in areas.items():
            result[f"auc_{order}"] = float(np.concatenate(parts).mean())
        result["auc_difference"] = result["auc_least_relevant_first"] - result["auc_most_relevant_first"]
        result["accuracy"] = self.accuracy(batch)
        return result

    def _by_label(self, batch: Sentences):
        for label in range(self.settings.labels):
            rows = (batch.labels == label).nonzero().flatten()
            if len(rows):
                yield label, rows

    def _check_sentences(self, sentences) -> Sentences:
        if not isinstance(sentences, Sentences):
            raise TypeError(
                f"sentences must be a Sentences from demo.sentences(count), got {type(sentences).__name__}"
            )
        self._check_inputs(sentences.inputs)
        return sentences

    def _check_inputs(self, inputs) -> dict:
        if not isinstance(inputs, dict) or set(inputs) != {"input_ids", "attention_mask"}:
            got = sorted(inputs) if isinstance(inputs, dict) else type(inputs).__name__
            raise TypeError(
                f"inputs must be a dict of input_ids and attention_mask (Sentences.inputs or demo.encode), "
                f"got {got}"
            )
        ids = self._check_ids(inputs["input_ids"], "input_ids", ndims=(2,))
        mask = inputs["attention_mask"]
        if not isinstance(mask, torch.Tensor) or mask.shape != ids.shape:
            shape = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
            raise ValueError(
                f"attention_mask must be a tensor of input_ids' shape {tuple(ids.shape)}, got {shape}"
            )
        return {"input_ids": ids, "attention_mask": mask}

    def _check_ids(self, ids, name: str, ndims: tuple[int, ...]) -> torch.Tensor:
        s = self.settings
        return check_token_ids(
            ids,
            name,
            ndims,
            positions=s.positions,
            largest=s.vocab_size - 1,
            bounds=f"[0, vocab_size) = [0, {s.vocab_size})",
            make="demo.sentences(count) or demo.encode(text)",
            item="sentence",
        )


# --- the sentences ---------------------------------------------------------------------------------

_PAD, _CLS, _SEP = (SPECIALS.index(name) for name in ("[PAD]", "[CLS]", "[SEP]"))


def _sentences(settings: KeywordSettings, count: int, generator: torch.Generator) -> Sentences:
    """``count`` sentences drawn from ``generator``: the training batches and the held-out ones."""
    s = settings
    words = torch.randint(s.min_words, s.max_words + 1, (count, 1), generator=generator)
    place = (torch.rand(count, 1, generator=generator) * words).long()  # the keyword's word index
    labels = torch.randint(0, s.labels, (count,), generator=generator)
    choice = torch.randint(0, s.keywords_per_label, (count,), generator=generator)
    keyword = torch.tensor(s.keyword_ids)[labels, choice]
    # Fillers and distractors: independent of the label, the same for every place.
    width = s.max_words
    fillers = torch.tensor(s.filler_ids)[torch.randint(0, s.fillers, (count, width), generator=generator)]
    distracting = torch.rand(count, width, generator=generator) < s.distractor_rate
    if s.distractors:
        picked = torch.randint(0, s.distractors, (count, width), generator=generator)
        others = torch.where(distracting, torch.tensor(s.distractor_ids)[picked], fillers)
    else:
        others = fillers
    index = torch.arange(width)[None]
    body = torch.where(index == place, keyword[:, None], others)
    body = torch.where(index < words, body, torch.full_like(body, _PAD))
    ids = torch.cat([torch.full((count, 1), _PAD), body, torch.full((count, 1), _PAD)], dim=1)
    ids[:, 0] = _CLS
    ids.scatter_(1, words + 1, _SEP)
    mask = (ids != _PAD).long()
    evidence = torch.zeros_like(ids, dtype=torch.bool)
    evidence.scatter_(1, place + 1, True)
    ignore = (ids == _PAD) | (ids == _CLS) | (ids == _SEP)
    return Sentences({"input_ids": ids, "attention_mask": mask}, labels, evidence.numpy(), ignore.numpy())


# --- training --------------------------------------------------------------------------------------


def train_keywords(
    settings: KeywordSettings | None = None,
    *,
    threads: int | None = 1,
    progress: Callable[[int, float], object] | None = None,
    **overrides,
) -> KeywordDemo:
    """Train a ``BertForSequenceClassification`` from scratch on keyword sentences; a ``KeywordDemo``.

    >>> demo = train_keywords(seed=0)                     # the defaults: a few seconds on one thread
    >>> demo = train_keywords(KeywordSettings(layers=3), seed=1)   # settings, with fields replaced

    - Training: AdamW (no weight decay) at ``lr``, warmed up over 30 steps, then decayed
      linearly to zero; cross-entropy on the label; fresh sentences each step.
    - ``threads``: ``torch.set_num_threads`` for the run, restored after (1 by default);
      None keeps the current count.
    - ``progress(step, loss)``: called after every step, step counted from 1.
    """
    settings = _settings(settings, overrides)
    check_run(threads, progress)
    started = time.perf_counter()
    with intra_op_threads(threads):
        model = _untrained(settings)
        data = torch.Generator().manual_seed(settings.seed)
        optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=0.0)
        steps = settings.steps
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda done: min(1.0, (done + 1) / 30) * (1 - done / max(steps, 1))
        )
        losses = []
        model.train()
        for step in range(steps):
            batch = _sentences(settings, settings.batch_size, data)
            loss = model(**batch.inputs, labels=batch.labels).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
            if progress is not None:
                progress(step + 1, losses[-1])
        threads_used = torch.get_num_threads()
    model.eval()
    return KeywordDemo(model, settings, losses, time.perf_counter() - started, threads_used)


def _settings(settings, overrides: dict) -> KeywordSettings:
    if settings is None:
        return KeywordSettings(**overrides)
    if not isinstance(settings, KeywordSettings):
        raise TypeError(
            f"settings must be a KeywordSettings or None, got {type(settings).__name__}; "
            "pass single fields by keyword (seed=1)"
        )
    return dataclasses.replace(settings, **overrides) if overrides else settings


def _untrained(settings: KeywordSettings):
    from transformers import BertForSequenceClassification

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        return BertForSequenceClassification._from_config(settings.config(), attn_implementation="sdpa")


# --- the cache -------------------------------------------------------------------------------------


_CACHE = DemoCache(
    name="keyword",
    prefix="keywords-bert",
    trainer_version=TRAINER_VERSION,
    framework="transformers",
    model="transformers BertForSequenceClassification state_dict",
    untrained=_untrained,
    demo=KeywordDemo,
    parameters="parameters",
)


def cache_path(settings: KeywordSettings) -> Path:
    """Where the weights trained with ``settings`` are cached (named after a hash of the settings)."""
    return _CACHE.path(settings)


def load_keyword_demo(
    settings: KeywordSettings | None = None,
    *,
    threads: int | None = 1,
    progress: Callable[[int, float], object] | None = None,
    **overrides,
) -> KeywordDemo:
    """The keyword demo for these settings: read from the user cache, or trained and cached.

    >>> demo = load_keyword_demo(seed=0)                  # the first call trains (a few seconds)
    >>> demo = load_keyword_demo(seed=0)                  # later calls read the cache: well under a second

    Takes the arguments of :func:`train_keywords`. ``threads`` and ``progress`` only matter
    when it trains. A cache file that cannot be used (see the module docstring) is trained
    again and replaced, with a ``CaptureWarning``; a cache folder that cannot be written
    warns and still returns the trained demo.
    """
    chosen = _settings(settings, overrides)
    check_run(threads, progress)
    return _CACHE.load(chosen, lambda: train_keywords(chosen, threads=threads, progress=progress))


# --- helpers ---------------------------------------------------------------------------------------


def class_names(settings: KeywordSettings | None = None) -> list[str]:
    """The class name of each label: ``CLASSES``, then ``class<label>``."""
    settings = KeywordSettings() if settings is None else settings
    return [CLASSES[i] if i < len(CLASSES) else f"class{i}" for i in range(settings.labels)]


def vocabulary(settings: KeywordSettings | None = None) -> list[str]:
    """The word of every token id of a demo trained with ``settings`` (default: the defaults).

    Ids: the specials (``[PAD]``, ``[CLS]``, ``[SEP]``, ``[MASK]``), the keywords label by
    label, the distractors, the fillers.

    >>> vocabulary()[:6]
    ['[PAD]', '[CLS]', '[SEP]', '[MASK]', 'goal', 'match']
    """
    s = KeywordSettings() if settings is None else settings
    names = list(SPECIALS)
    for label in range(s.labels):
        listed = KEYWORDS[label] if label < len(KEYWORDS) else ()
        for i in range(s.keywords_per_label):
            names.append(listed[i] if i < len(listed) else f"kw{label}.{i}")
    names += [DISTRACTORS[i] if i < len(DISTRACTORS) else f"distractor{i}" for i in range(s.distractors)]
    names += [FILLERS[i] if i < len(FILLERS) else f"filler{i}" for i in range(s.fillers)]
    return names
