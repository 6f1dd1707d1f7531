"""Induction heads: a small GPT-2 trained here on repeated random blocks (Olsson et al., 2022).

>>> from visualizer.demos.induction import load_induction_demo
>>> demo = load_induction_demo(seed=0)          # trained once (30-45 s on one core), then cached
>>> ids = demo.sequences(64)                    # (64, 1 + 2n) token ids: BOS, a random block, the block again
>>> demo.tokens(ids[0])[:4]                     # readable names for the views
['<bos>', 'date', 'jay', 'toad']
>>> scores = demo.scores(ids)                   # {name: (layers, heads)} numpy arrays
>>> scores["previous_token"][0].round(2)       # layer 0: previous-token heads (0.54-0.61)
array([0.56, 0.62, 0.55, 0.59])
>>> scores["induction"][1].round(2)             # layer 1: induction heads (the best 0.92-0.96)
array([0.96, 0.54, 0.06, 0.86])
>>> example = demo.example()                    # the first held-out sequence it copies by a clear margin
>>> example.copy_rate                           # the held-out sequences whose copy it finishes exactly
0.85546875
>>> n = demo.settings.block_len                 # 8
>>> out = demo.generate(example.ids[:, : n + 3], n - 2)  # greedy, from the block and two copied tokens
>>> bool((out == example.ids).all())            # on any machine: the example was chosen for its margin
True

The figures are for one machine; another processor rounds differently, trains weights that
differ in the last bits, and lands elsewhere within the spread that
``benchmarks/demo_spread.py`` measures over seeds, thread counts, deterministic algorithms
and float64 (``benchmarks/README.md``). So the tests assert rates and scores with margins,
never one sequence's exact output, and the demo's example is chosen by a rule
(:meth:`InductionDemo.example`).

The model is transformers' ``GPT2LMHeadModel`` built from a small ``GPT2Config`` (2 layers,
4 heads, no dropout), trained from scratch. A training sequence is ``[BOS]``, a prefix of
0 to ``max_prefix`` tokens, a block of ``n`` distinct tokens (``min_block`` to
``max_block``, drawn per sequence), the same block again, and a suffix up to the fixed
length. The loss is where the next token can be known:

- on the second copy (after its first token): the next token is the one that followed
  the current token's earlier occurrence. Because the block length and its place vary, no
  positional rule predicts it; the model has to learn the two-layer circuit of Olsson et
  al.: a **previous-token head** in layer 0 (each position looks at the one before it and
  copies its token) and an **induction head** in layer 1 (each position looks for an
  earlier position whose previous token is its own token, and copies what it finds there);
- in the prefix and the suffix, which follow a fixed random rule from the two tokens before
  (``x[t] = rule[x[t - 2], x[t - 1]]``, the rule a (vocab, vocab) table drawn from the seed).
  Predicting ``x[t + 1]`` at position t then needs the current token and the one before it:
  the rule rewards a previous-token head from the first steps. Without it the
  previous-token head formed too late for a demo (none in 3,000 steps in our runs), as the
  model first settled on positional guesses. A rule from the token two back alone
  (``rule[x[t - 2]]``) gave a previous-token head too, but the layer-1 heads then looked at
  ``j + 2`` and read the answer from what the previous-token head wrote there: an induction
  mechanism, but not the canonical head.

What the default model (seed 0, 1,500 steps) learns is measured by the tests: layer 0 has
previous-token heads and layer 1 an induction head, each scoring at least 0.5 (see below);
it continues most repeated blocks exactly (greedy decoding), about 85-90 % of held-out ones
(longer training copies more: about 91 % after 3,000 steps and 96 % after 4,500, at two and
three times the training time).

The demo sequences (:meth:`InductionDemo.sequences`) are the simplest case, no prefix and
no filler: ``[BOS] + block + block``, positions ``0``, ``1..n`` (first copy) and
``n+1..2n`` (second copy). For query position i in the second copy:

- **previous-token score** of a head: the mean over those queries (and the batch) of the
  attention weight on key ``i - 1``;
- **induction score** of a head: the mean over those queries of the weight on key
  ``i - n + 1``: token i first occurred at ``j = i - n``, and the key is ``j + 1``, the token
  that followed it.

Both are "mean attention on the expected key", from 0 to 1; a head that spreads its weight
evenly over the 1 + 2n keys scores about ``1 / (1.5 n)``.

Reproducibility: as in the copy task, training runs on one intra-op thread by default
(``threads=1``), the weights are drawn under ``torch.random.fork_rng`` from
``torch.manual_seed(seed)`` and the batches from a ``torch.Generator`` seeded with ``seed``,
so the same settings give the same weights, bit for bit, on the same torch build, and the
caller's random state is left alone.

Cache: :func:`load_induction_demo` trains once and keeps the weights in the user cache
(:func:`visualizer.models._cache.cache_dir`, ``$VISUALIZER_CACHE``), named after a hash of
the settings. The file's metadata holds the settings, the torch and transformers versions
it was trained with and the sha256 of its tensors; a file that cannot be read, whose
settings or versions differ, whose tensors no longer match the hash, or that does not hold
this model's parameters is trained again and replaced, with a ``CaptureWarning``.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from visualizer._arrays import layer_array
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
    is_int,
)

__all__ = [
    "Example",
    "InductionDemo",
    "InductionSettings",
    "induction_score",
    "load_induction_demo",
    "previous_token_score",
    "train_induction",
    "vocabulary",
]

# The held-out stream is the same for every training seed, so models trained with
# different seeds are compared on the same sequences.
HELD_OUT_SEED = 3_141_592
#: Bump when training changes, so that caches written by older code are not reused.
TRAINER_VERSION = "2"
#: Short, distinct words, so a view of the attention reads as text; then ``t<id>``.
WORDS = (
    "ant bee cat dog elk fox gnu hen ibis jay kiwi lark mole newt owl pig "
    "quail rat seal toad urchin vole wasp yak zebu "
    "ash bay cedar date elm fig gum hazel iris jute kelp lime maple nut oak pear "
    "red orange yellow green blue indigo violet pink grey black white brown "
    "one two three four five six seven eight nine ten"
).split()
BOS_NAME = "<bos>"


#: The logit margin :meth:`InductionDemo.example` asks of its example's copy: far above rounding.
EXAMPLE_MARGIN = 1.0


class Example(NamedTuple):
    """What :meth:`InductionDemo.example` returns."""

    ids: torch.Tensor  #: (1, 1 + 2n) token ids, ``[BOS] + block + block``
    index: int  #: its index in ``demo.sequences(candidates)``
    margin: float  #: its copy margin in logits (:meth:`InductionDemo.copy_margins`)
    copy_rate: float  #: the share of the candidates whose copy the model knows (margin above 0)


@dataclasses.dataclass(frozen=True)
class InductionSettings:
    """The hyper-parameters of one training run; ``demo.settings``. Checked when built.

    >>> InductionSettings().positions                     # 1 + max_prefix + 2 * max_block
    31
    >>> InductionSettings(vocab_size=32).bos              # the BOS token id is vocab_size
    32

    - ``block_len``: ``n`` of the demo sequences, from ``min_block`` to ``max_block``;
      training draws ``n`` uniformly from that range and a prefix of 0 to ``max_prefix``
      random tokens.
    - ``vocab_size``: the number of block tokens, besides BOS; a training sequence holds up
      to ``max_prefix + 2 * max_block - min_block`` distinct ones, so it must be at least that.
    - ``d_model``, ``heads``, ``layers``: the ``GPT2Config``'s ``n_embd``, ``n_head`` and
      ``n_layer`` (``n_inner`` is ``4 * d_model``).
    """

    seed: int = 0
    steps: int = 1500
    block_len: int = 8
    min_block: int = 3
    max_block: int = 10
    max_prefix: int = 10
    vocab_size: int = 32
    d_model: int = 64
    heads: int = 4
    layers: int = 2
    batch_size: int = 32
    lr: float = 3e-3

    def __post_init__(self) -> None:
        check_ints(
            self,
            {
                "seed": None,
                "steps": 0,
                "block_len": 2,
                "min_block": 2,
                "max_block": 2,
                "max_prefix": 0,
                "vocab_size": 2,
                "d_model": 1,
                "heads": 1,
                "layers": 2,
                "batch_size": 1,
            },
        )
        if not self.min_block <= self.block_len <= self.max_block:
            raise ValueError(
                f"block_len ({self.block_len}) must lie from min_block ({self.min_block}) to max_block "
                f"({self.max_block}): the model only sees block lengths in that range"
            )
        distinct = self.max_prefix + 2 * self.max_block - self.min_block
        if self.vocab_size < distinct:
            raise ValueError(
                f"vocab_size ({self.vocab_size}) must be at least max_prefix + 2 * max_block - min_block "
                f"= {distinct}: the tokens of a sequence, but the repeat, are distinct"
            )
        if self.d_model % self.heads:
            raise ValueError(
                f"d_model ({self.d_model}) must be divisible by heads ({self.heads}): "
                "each head gets d_model // heads dimensions"
            )
        check_positive_numbers(self, ["lr"])

    @property
    def bos(self) -> int:
        """The begin-of-sequence token that starts every sequence; never a block token."""
        return self.vocab_size

    @property
    def positions(self) -> int:
        """The training sequence length, and the model's ``n_positions``."""
        return 1 + self.max_prefix + 2 * self.max_block

    def config(self):
        """The ``transformers.GPT2Config`` of the model: no dropout, BOS = EOS = ``bos``."""
        from transformers import GPT2Config

        return GPT2Config(
            vocab_size=self.vocab_size + 1,
            n_positions=self.positions,
            n_embd=self.d_model,
            n_layer=self.layers,
            n_head=self.heads,
            n_inner=4 * self.d_model,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            bos_token_id=self.bos,
            eos_token_id=self.bos,
        )


@dataclasses.dataclass
class InductionDemo:
    """A trained induction model with its settings; made by ``train_induction`` or ``load_induction_demo``.

    - ``model``: the ``transformers.GPT2LMHeadModel``, in eval mode, with sdpa attention.
    - ``settings``: the ``InductionSettings`` it was trained with.
    - ``losses``: the training loss after each step, ``steps`` floats (kept in the cache too).
    - ``seconds``: the training time in seconds (as measured when it was trained).
    - ``threads``: the torch intra-op thread count it was trained with.
    - ``path``: the cache file it was read from or written to, or None.
    """

    model: object
    settings: InductionSettings
    losses: list[float]
    seconds: float
    threads: int
    path: Path | None = None

    def sequences(self, count: int = 256, seed: int = HELD_OUT_SEED, block_len: int | None = None):
        """``[BOS] + block + block`` with a random block of distinct tokens: (count, 1 + 2n) token ids.

        The same ids for the same ``seed``; the default seed is a stream training never reads.
        ``block_len`` (default ``settings.block_len``) must lie from ``min_block`` to ``max_block``.

        >>> demo.sequences(2, seed=1).shape
        torch.Size([2, 17])
        """
        s = self.settings
        count = check_int(count, "count", 1)
        check_int(seed, "seed")
        n = s.block_len if block_len is None else block_len
        if not is_int(n):
            raise TypeError(f"block_len must be an int or None, got {type(n).__name__}: {n!r}")
        if not s.min_block <= n <= s.max_block:
            raise ValueError(
                f"block_len must lie from min_block ({s.min_block}) to max_block ({s.max_block}), "
                f"the lengths the model was trained on, got {n}"
            )
        generator = torch.Generator().manual_seed(int(seed))
        block = torch.rand(count, s.vocab_size, generator=generator).argsort(-1)[:, :n]
        return torch.cat([torch.full((count, 1), s.bos), block, block], dim=1)

    def tokens(self, ids) -> list:
        """Readable names of token ids: strings for (length,) ids, a list of lists for (batch, length).

        >>> demo.tokens(torch.tensor([32, 0, 1]))
        ['<bos>', 'ant', 'bee']
        """
        ids = self._check_ids(ids, "ids", ndims=(1, 2))
        names = vocabulary(self.settings)
        if ids.ndim == 1:
            return [names[i] for i in ids.tolist()]
        return [[names[i] for i in row] for row in ids.tolist()]

    def attentions(self, ids) -> list:
        """Every layer's attention on ``ids``, by ``capture_attention``: (batch, heads, L, L) tensors."""
        from visualizer import capture_attention

        ids = self._check_ids(ids, "ids", ndims=(2,))
        with evaluating(self.model), capture_attention(self.model) as maps:
            self.model(ids)
        return [maps[layer] for layer in range(len(maps))]

    def scores(self, ids, block_len: int | None = None) -> dict[str, np.ndarray]:
        """Both scores of every head on ``[BOS] + block + block`` ids: ``{"previous_token", "induction"}``,
        each a (layers, heads) float64 array.

        ``block_len`` defaults to ``(ids.shape[1] - 1) // 2``.
        """
        ids = self._check_ids(ids, "ids", ndims=(2,))
        n = (ids.shape[1] - 1) // 2 if block_len is None else block_len
        maps = self.attentions(ids)
        return {
            "previous_token": np.stack([previous_token_score(layer, n) for layer in maps]),
            "induction": np.stack([induction_score(layer, n) for layer in maps]),
        }

    def copy_margins(self, ids) -> torch.Tensor:
        """How clearly the model knows the copy of each ``[BOS] + block + block`` sequence: (batch,) float32.

        Teacher forced, over the second copy's positions whose next token is known (its first
        token to its second last): the smallest margin of the right next token's logit over
        the largest other logit. Positive means every prediction is right, so greedy decoding
        from the block and any start of its copy finishes the copy exactly; the size says how
        far rounding (another processor, thread count or kernel) is from flipping a choice:
        such rounding moves these logits by about 1e-5.

        >>> margins = demo.copy_margins(demo.sequences(256))
        >>> float((margins > 0).float().mean())           # the held-out sequences it copies exactly
        0.94...
        """
        ids = self._check_ids(ids, "ids", ndims=(2,))
        n = self._block(ids)
        with evaluating(self.model):
            logits = self.model(ids).logits[:, n + 1 : 2 * n].float()  # predicting ids[:, n + 2 :]
        right = ids[:, n + 2 :].unsqueeze(-1)
        chosen = logits.gather(-1, right).squeeze(-1)
        others = logits.scatter(-1, right, -math.inf).amax(-1)
        return (chosen - others).amin(-1)

    def copy_loss(self, output, ids) -> torch.Tensor:
        """The model's cross-entropy on the second copy of ``[BOS] + block + block`` ids (teacher
        forced, the positions whose next token is known), from its ``output``: the metric of
        :meth:`head_effects`. A 0-d tensor."""
        ids = self._check_ids(ids, "ids", ndims=(2,))
        n = self._block(ids)
        logits = output.logits[:, n + 1 : 2 * n].float()  # predicting ids[:, n + 2 :]
        return torch.nn.functional.cross_entropy(logits.flatten(0, 1), ids[:, n + 2 :].flatten())

    def copy_accuracy(self, ids) -> float:
        """The share of the second copy's next tokens the model predicts right (teacher forced,
        the most likely token), over ``[BOS] + block + block`` ids: run it inside
        :func:`visualizer.ablate` to see what the copy needs.

        >>> demo.copy_accuracy(demo.sequences(256))
        0.97...
        >>> with visualizer.ablate(demo.model, {1: demo.induction_heads()}):
        ...     demo.copy_accuracy(demo.sequences(256))                 # the copy breaks
        0.02...
        """
        ids = self._check_ids(ids, "ids", ndims=(2,))
        n = self._block(ids)
        with evaluating(self.model):
            predicted = self.model(ids).logits[:, n + 1 : 2 * n].argmax(-1)
        return float((predicted == ids[:, n + 2 :]).float().mean())

    def induction_heads(self, ids=None, *, threshold: float = 0.5) -> list[int]:
        """The last layer's heads whose induction score reaches ``threshold`` on ``ids`` (default
        ``sequences(256)``): the heads the attention pattern calls induction heads."""
        ids = self.sequences(256) if ids is None else ids
        scores = self.scores(ids)["induction"][-1]
        return [int(head) for head in np.flatnonzero(scores >= threshold)]

    def head_effects(self, ids=None):
        """How much zero-ablating each head alone raises :meth:`copy_loss` on ``ids`` (default
        ``sequences(256)``): a :class:`visualizer.HeadEffects`, (layers, heads)."""
        from visualizer import head_effects

        ids = self.sequences(256) if ids is None else self._check_ids(ids, "ids", ndims=(2,))
        self._block(ids)
        with evaluating(self.model):
            return head_effects(self.model, ids, lambda output: self.copy_loss(output, ids))

    def ground_truth_scores(
        self, method: str, count: int = 64, *, faithfulness_steps: int = 10, threads: int | None = 1
    ) -> dict[str, float]:
        """How well ``method`` finds the evidence of the copy: one row of a table.

        For each of ``count`` held-out ``[BOS] + block + block`` sequences and each position i of
        the second copy whose next token is known (n + 1 .. 2n - 1), the target is the logit of
        that next token at i; its evidence is exactly one token, the one after the earlier
        occurrence of the current token (position i - n + 1). ``[BOS]``, the query i and the
        positions after it (which a causal model cannot see) are left out of the ranking.
        ``method``: one of :data:`visualizer.relevance.METHODS`, or ``"random"`` (scores from a
        fixed seed). Returns, averaged over sequences and positions:

        - ``pointing_game``: the share whose top token is the evidence;
        - ``evidence_rank``: the evidence's mean rank, 0 = top;
        - ``map``: mean average precision of the scores for the evidence;
        - ``auc_most_relevant_first``, ``auc_least_relevant_first``, ``auc_random``,
          ``auc_difference``: :func:`visualizer.faithfulness`'s mean areas (``faithfulness_steps``
          steps), least minus most relevant first for the difference (larger is better).

        ``threads``: torch's intra-op threads for the run, restored after (None keeps them): one
        is the fastest for a model this small.

        >>> demo.ground_truth_scores("attnlrp")["pointing_game"]
        1.0
        """
        method = check_method(method)
        ids = self.sequences(check_int(count, "count", 1))
        steps = check_int(faithfulness_steps, "faithfulness_steps", 1)
        n = self._block(ids)
        generator = torch.Generator().manual_seed(0)
        rows = []
        with intra_op_threads(threads):
            for i in range(n + 1, 2 * n):
                rows.append(self._ground_truth_row(ids, i, n, method, steps, generator))
        return {key: float(np.mean([row[key] for row in rows])) for key in rows[0]}

    def _ground_truth_row(self, ids, i: int, n: int, method: str, steps: int, generator) -> dict[str, float]:
        """:meth:`ground_truth_scores`' measures at position i of the second copy."""
        from visualizer import explain, faithfulness
        from visualizer.demos._truth import evidence_rank, pointing_game, segmentation_scores

        items = torch.arange(ids.shape[0])
        following = ids[:, i + 1]

        def logit(output):
            return output.logits[items, i, following]

        if method == "random":
            scores = torch.rand(ids.shape, generator=generator)
        else:
            scores = explain(self.model, ids, logit, method=method, position=i).scores
        evidence = np.zeros(ids.shape, dtype=bool)
        evidence[:, i - n + 1] = True
        ignore = np.zeros(ids.shape, dtype=bool)
        ignore[:, 0] = True
        ignore[:, i:] = True
        values = scores.double().numpy()
        check = faithfulness(self.model, ids, scores, logit, position=i, steps=steps, random_orders=1)
        return {
            "pointing_game": pointing_game(values, evidence, ignore),
            "evidence_rank": float(np.mean(evidence_rank(values, evidence, ignore))),
            "map": segmentation_scores(values, evidence, ignore)["map"],
            **{f"auc_{order}": float(check.auc[order].mean()) for order in check.auc},
            "auc_difference": float(check.difference.mean()),
        }

    def _block(self, ids: torch.Tensor) -> int:
        n = (ids.shape[1] - 1) // 2
        if ids.shape[1] != 1 + 2 * n or n < 2:
            raise ValueError(
                f"ids must be [BOS] + block + block sequences of odd length 1 + 2n with n >= 2 "
                f"(demo.sequences), got length {ids.shape[1]}"
            )
        return n

    def example(self, *, candidates: int = 256, margin: float = EXAMPLE_MARGIN) -> Example:
        """The demo's example: the first held-out sequence whose copy the model knows by ``margin`` logits.

        The rule, so that what the example shows does not depend on luck: among
        ``sequences(candidates)`` (the same ids on every machine), the first whose
        :meth:`copy_margins` is at least ``margin``; greedy decoding then finishes its copy
        exactly from any cut after the copy's first token, on any machine whose rounding moves
        the logits by less than the margin. A model that copies no candidate that clearly
        gives the candidate with the largest margin, and ``Example.margin`` says so.

        >>> demo.example()
        Example(ids=tensor([[32, 3, 19, ...]]), index=0, margin=4.1..., copy_rate=0.95...)

        ``Example.copy_rate`` is the share of the candidates copied exactly (margin above 0).
        """
        candidates = check_int(candidates, "candidates", 1)
        if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 0 <= margin < math.inf:
            raise ValueError(f"margin must be a finite number of logits, at least 0, got {margin!r}")
        ids = self.sequences(candidates)
        margins = self.copy_margins(ids)
        clear = (margins >= margin).nonzero().flatten()
        index = int(clear[0]) if len(clear) else int(margins.argmax())
        rate = float((margins > 0).float().mean())
        return Example(ids[index : index + 1], index, float(margins[index]), rate)

    def generate(self, prompt, new_tokens: int):
        """Greedy continuation (``model.generate``, no sampling): (batch, P) ids -> (batch, P + new_tokens).

        >>> ids = demo.sequences(4)                           # n = 8
        >>> out = demo.generate(ids[:, :12], 5)               # the first 3 tokens of the copy, then 5 more
        >>> bool((out == ids).all())
        True
        """
        prompt = self._check_ids(prompt, "prompt", ndims=(2,))
        new_tokens = check_int(new_tokens, "new_tokens", 1)
        room = self.settings.positions - prompt.shape[1]
        if new_tokens > room:
            raise ValueError(
                f"new_tokens ({new_tokens}) does not fit: the model has {self.settings.positions} positions "
                f"and the prompt takes {prompt.shape[1]}; ask for at most {room}"
            )
        with evaluating(self.model):
            return self.model.generate(
                prompt,
                attention_mask=torch.ones_like(prompt),
                max_new_tokens=new_tokens,
                min_new_tokens=new_tokens,
                do_sample=False,
                pad_token_id=self.settings.bos,
            )

    def _check_ids(self, ids, name: str, ndims: tuple[int, ...]) -> torch.Tensor:
        s = self.settings
        return check_token_ids(
            ids,
            name,
            ndims,
            positions=s.positions,
            largest=s.bos,
            bounds=f"[0, vocab_size] = [0, {s.bos}] (vocab_size is BOS)",
            make="demo.sequences(count)",
            item="sequence",
        )


def previous_token_score(maps, block_len: int) -> np.ndarray:
    """Per head, the mean attention from each second-copy position i to key i - 1: (heads,) float64.

    ``maps``: one layer's (batch, heads, queries, keys) or (heads, queries, keys) weights
    (torch tensor or numpy array) on ``[BOS] + block + block`` sequences, so queries i run
    over the second copy, ``block_len + 1 .. 2 * block_len``. See the module docstring.

    >>> previous_token_score(np.eye(7, k=-1)[None], 3)    # a head that always looks one back
    array([1.])
    """
    maps, n = _check_maps(maps, block_len, "previous_token_score()")
    queries = np.arange(n + 1, 2 * n + 1)
    return maps[:, :, queries, queries - 1].mean(axis=(0, 2))


def induction_score(maps, block_len: int) -> np.ndarray:
    """Per head, the mean attention from each second-copy position i to key i - n + 1: (heads,) float64.

    Token i occurred first at ``j = i - n`` (n = ``block_len``); key ``j + 1`` holds the
    token that followed it, the one to predict. ``maps`` as for :func:`previous_token_score`.

    >>> induction_score(np.eye(7, k=-2)[None], 3)         # n = 3: i - n + 1 = i - 2
    array([1.])
    """
    maps, n = _check_maps(maps, block_len, "induction_score()")
    queries = np.arange(n + 1, 2 * n + 1)
    return maps[:, :, queries, queries - n + 1].mean(axis=(0, 2))


def _check_maps(maps, block_len, function: str) -> tuple[np.ndarray, int]:
    array = layer_array(maps, f"{function}: maps").astype(np.float64)
    block_len = check_int(block_len, f"{function}: block_len", 1)
    length = 1 + 2 * block_len
    if array.shape[-1] != array.shape[-2] or array.shape[-1] < length or array.shape[0] == 0:
        raise ValueError(
            f"{function}: maps must be square self-attention over at least 1 + 2 * block_len = {length} "
            f"positions ([BOS] + block + block) and hold one sequence or more, got shape {array.shape}"
        )
    return array, block_len


def train_induction(
    *,
    threads: int | None = 1,
    progress: Callable[[int, float], object] | None = None,
    **settings,
) -> InductionDemo:
    """Train a ``GPT2LMHeadModel`` from scratch on repeated random blocks; returns an ``InductionDemo``.

    >>> demo = train_induction(seed=0)                    # the defaults: 30-45 s on one thread
    >>> demo = train_induction(seed=1, steps=50)          # any InductionSettings field by keyword

    - Training: AdamW (no weight decay) at ``lr``, warmed up over 50 steps, then decayed
      linearly to zero; cross-entropy on the second copy (see the module docstring); a fresh
      batch each step.
    - ``threads``: ``torch.set_num_threads`` for the run, restored after (1 by default);
      None keeps the current count.
    - ``progress(step, loss)``: called after every step, step counted from 1.
    """
    settings = InductionSettings(**settings)
    check_run(threads, progress)
    started = time.perf_counter()
    with intra_op_threads(threads):
        model = _untrained(settings)
        data = torch.Generator().manual_seed(settings.seed)
        rule = torch.randint(
            0, settings.vocab_size, (settings.vocab_size, settings.vocab_size), generator=data
        )
        optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=0.0)
        steps = settings.steps
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda done: min(1.0, (done + 1) / 50) * (1 - done / max(steps, 1))
        )
        losses = []
        model.train()
        for step in range(steps):
            ids, copy_targets, rule_targets = _training_batch(settings, data, rule)
            targets = torch.where(copy_targets != -1, copy_targets, rule_targets).flatten()
            logits = model(ids).logits.flatten(0, 1)  # (batch * positions, vocab_size + 1)
            loss = torch.nn.functional.cross_entropy(logits, targets, ignore_index=-1)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
            if progress is not None:
                progress(step + 1, losses[-1])
        threads_used = torch.get_num_threads()
    model.eval()
    return InductionDemo(model, settings, losses, time.perf_counter() - started, threads_used)


def _untrained(settings: InductionSettings):
    from transformers import GPT2LMHeadModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        return GPT2LMHeadModel._from_config(settings.config(), attn_implementation="sdpa")


def _training_batch(settings: InductionSettings, generator: torch.Generator, rule: torch.Tensor):
    """(ids, copy_targets, rule_targets), each (batch, positions); a target is -1 elsewhere.

    A sequence: BOS; a prefix of p tokens; a block of n distinct tokens that are not in the
    prefix; the block again; a suffix up to the fixed length. Prefix and suffix each follow
    ``rule`` from the two tokens before (``x[t] = rule[x[t - 2], x[t - 1]]``, from two random tokens).
    Targets: the next token inside the copy (after its first token), and wherever the rule
    gives it.
    """
    s, batch, length = settings, settings.batch_size, settings.positions - 1
    n = torch.randint(s.min_block, s.max_block + 1, (batch, 1), generator=generator)
    p = torch.randint(0, s.max_prefix + 1, (batch, 1), generator=generator)
    chains = []
    for _ in range(2):  # the prefix's and the suffix's
        chain = list(torch.randint(0, s.vocab_size, (2, batch), generator=generator))
        while len(chain) < length:
            chain.append(rule[chain[-2], chain[-1]])
        chains.append(torch.stack(chain[:length], dim=1))  # (batch, length)
    t = torch.arange(1, s.positions)[None].expand(batch, -1)  # positions after BOS
    in_prefix, in_suffix = t <= p, t > p + 2 * n
    # Block tokens: distinct, none of the prefix's (those sort last).
    keys = torch.rand(batch, s.vocab_size, generator=generator)
    keys = keys.scatter_add(1, chains[0], in_prefix.to(keys.dtype) * 2)
    block = keys.argsort(-1)
    body = block.gather(1, torch.where(t > p + n, t - 1 - p - n, t - 1 - p).clamp(0, s.vocab_size - 1))
    prefix = chains[0]
    suffix = chains[1].gather(1, (t - 1 - p - 2 * n).clamp(min=0))
    ids = torch.where(in_prefix, prefix, torch.where(in_suffix, suffix, body))
    ids = torch.cat([torch.full((batch, 1), s.bos), ids], dim=1)
    q = torch.arange(s.positions)[None]
    copy = (q >= p + n + 1) & (q <= p + 2 * n - 1)
    by_rule = (((q >= 2) & (q <= p - 1)) | (q >= p + 2 * n + 2)) & (q < s.positions - 1)
    following = ids.roll(-1, dims=1)
    none = torch.full_like(ids, -1)
    return ids, torch.where(copy, following, none), torch.where(by_rule, following, none)


# --- the cache -----------------------------------------------------------------------------------


_CACHE = DemoCache(
    name="induction",
    prefix="induction-gpt2",
    trainer_version=TRAINER_VERSION,
    framework="transformers",
    model="transformers GPT2LMHeadModel state_dict",
    untrained=_untrained,
    demo=InductionDemo,
)


def cache_path(settings: InductionSettings) -> Path:
    """Where the weights trained with ``settings`` are cached (named after a hash of the settings)."""
    return _CACHE.path(settings)


def load_induction_demo(
    *,
    threads: int | None = 1,
    progress: Callable[[int, float], object] | None = None,
    **settings,
) -> InductionDemo:
    """The induction demo for these settings: read from the user cache, or trained and cached.

    >>> demo = load_induction_demo(seed=0)                # the first call trains (30-45 s)
    >>> demo = load_induction_demo(seed=0)                # later calls read the cache: well under a second

    Takes the keywords of :func:`train_induction`. ``threads`` and ``progress`` only matter
    when it trains. A cache file that cannot be used (see the module docstring) is trained
    again and replaced, with a ``CaptureWarning``; a cache folder that cannot be written
    warns and still returns the trained demo.
    """
    chosen = InductionSettings(**settings)
    check_run(threads, progress)
    return _CACHE.load(
        chosen, lambda: train_induction(threads=threads, progress=progress, **dataclasses.asdict(chosen))
    )


# --- helpers -------------------------------------------------------------------------------------


def vocabulary(settings: InductionSettings | None = None) -> list[str]:
    """The name of every token id of a demo trained with ``settings`` (default: the defaults), BOS last.

    >>> vocabulary()[:3], vocabulary()[-1]
    (['ant', 'bee', 'cat'], '<bos>')
    """
    settings = InductionSettings() if settings is None else settings
    return [_word(i, settings.bos) for i in range(settings.vocab_size + 1)]


def _word(token: int, bos: int) -> str:
    if token == bos:
        return BOS_NAME
    return WORDS[token] if token < len(WORDS) else f"t{token}"
