"""The copy task: a small ``nn.Transformer`` learns to copy its input; its cross-attention becomes diagonal.

>>> from visualizer.demos.copy_task import train_copy_task, diagonal_mass
>>> task = train_copy_task(seed=0)                      # 300 steps, a few seconds on 2 CPU cores
>>> src = task.held_out(64)                             # (64, 10) token ids in [0, 16)
>>> bool((task.predict(src) == src).all())              # greedy decoding copies the input
True
>>> maps = task.cross_attention(src)                    # (batch, heads, queries, keys) = (64, 2, 10, 10)
>>> diagonal_mass(maps)                                 # target position i looks at source position i
0.99...
>>> sorted(task.snapshots)                              # steps at which the maps were kept, for a notebook
[0, 5, 10, 20, 40, 80, 160, 300]

The source is ``seq_len`` random tokens; the target is the same tokens. The decoder reads
``[BOS] + target[:-1]`` (teacher forcing, causal mask) and predicts ``target``. To emit
token i it must fetch source token i, so its last layer's cross-attention (queries: target
positions, keys: source positions) ends up on the diagonal.

Reproducibility: the same arguments give the same losses and weights, bit for bit, on the
same torch build. Training runs on one intra-op thread by default (``threads=1``, restored
after), because the thread count changes the order of float sums and so the last bits, and
because this model is too small to gain from more: on a busy 2-core machine two threads were
up to 12 times slower than one, and on an idle one barely faster. Weights are drawn with
``torch.manual_seed(seed)`` inside ``torch.random.fork_rng``, so the caller's global random
state is left as it was;
batches come from a ``torch.Generator`` seeded with ``seed``; dropout is off, so training
draws no other random numbers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable

import numpy as np
import torch
from torch import nn

from visualizer._arrays import layer_array
from visualizer.demos._training import (
    check_ints,
    check_positive_numbers,
    check_run,
    evaluating,
    intra_op_threads,
    is_int,
)

__all__ = ["CopyTask", "CopyTaskSettings", "CopyTransformer", "diagonal_mass", "train_copy_task"]

# The held-out stream is the same for every training seed, so models trained with
# different seeds are compared on the same sequences.
HELD_OUT_SEED = 2_718_281


@dataclasses.dataclass(frozen=True)
class CopyTaskSettings:
    """The hyper-parameters of one training run; ``task.settings``. Checked when built.

    >>> CopyTaskSettings(seq_len=12).bos                  # the BOS token id is vocab_size
    16
    """

    seed: int = 0
    steps: int = 300
    seq_len: int = 10
    vocab_size: int = 16
    d_model: int = 32
    nhead: int = 2
    layers: int = 1
    batch_size: int = 64
    lr: float = 1e-2

    def __post_init__(self) -> None:
        check_ints(
            self,
            {
                "seed": None,
                "steps": 0,
                "seq_len": 1,
                "vocab_size": 2,
                "d_model": 1,
                "nhead": 1,
                "layers": 1,
                "batch_size": 1,
            },
        )
        if self.d_model % self.nhead:
            raise ValueError(
                f"d_model ({self.d_model}) must be divisible by nhead ({self.nhead}): "
                "each head gets d_model // nhead dimensions"
            )
        check_positive_numbers(self, ["lr"])

    @property
    def bos(self) -> int:
        """The begin-of-sequence token that starts the decoder input; never a source token."""
        return self.vocab_size


class CopyTransformer(nn.Module):
    """Token ids in, next-token logits out: ``model(src, tgt)``, with the causal mask built inside.

    >>> logits = model(src, tgt)  # src (batch, S), tgt (batch, T), S, T <= seq_len: (batch, T, vocab_size)
    >>> model.transformer.decoder.layers[-1].multihead_attn   # the cross-attention the demo watches
    """

    def __init__(self, *, vocab_size: int, seq_len: int, d_model: int, nhead: int, layers: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size + 1, d_model)  # + 1: the BOS token
        # One learned table for both sides: target position i and source position i share a
        # vector, so a query can find its key by position. Sinusoidal positions also train, but
        # neighbours look alike and about 10% of the attention leaks to position i - 1.
        self.position = nn.Embedding(seq_len, d_model)
        self.transformer = nn.Transformer(
            d_model, nhead, layers, layers, dim_feedforward=2 * d_model, dropout=0.0, batch_first=True
        )
        self.unembed = nn.Linear(d_model, vocab_size)

    def forward(self, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        mask = nn.Transformer.generate_square_subsequent_mask(tgt.shape[1], device=tgt.device)
        hidden = self.transformer(self._embed(src), self._embed(tgt), tgt_mask=mask, tgt_is_causal=True)
        return self.unembed(hidden)

    def _embed(self, tokens: torch.Tensor) -> torch.Tensor:
        # No sqrt(d_model) scaling: with unit-variance embeddings it would drown the positions.
        return self.embed(tokens) + self.position.weight[: tokens.shape[1]]


@dataclasses.dataclass
class CopyTask:
    """A trained copy model with its settings and training history; made by ``train_copy_task``.

    - ``model``: the ``CopyTransformer``, in eval mode.
    - ``settings``: the ``CopyTaskSettings`` it was trained with.
    - ``losses``: the training loss after each step, ``steps`` floats.
    - ``example``: a fixed held-out source sequence, (seq_len,).
    - ``snapshots``: ``{step: (heads, queries, keys)}``, the last layer's cross-attention on
      ``example`` after that many steps (0: at initialisation), to watch it become diagonal.
    - ``threads``: the torch intra-op thread count it was trained with.
    """

    model: CopyTransformer
    settings: CopyTaskSettings
    losses: list[float]
    example: torch.Tensor
    snapshots: dict[int, torch.Tensor]
    threads: int

    def sample(self, batch: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Random source sequences, (batch, seq_len) token ids; the copy target is the same tensor.

        ``generator=None`` draws from torch's global generator, like ``torch.randint``.

        >>> task.sample(8, torch.Generator().manual_seed(1)).shape
        torch.Size([8, 10])
        """
        return _sample(self.settings, batch, generator)

    def held_out(self, batch: int = 256) -> torch.Tensor:
        """The same (batch, seq_len) sequences on every call, from a stream training never reads."""
        return _sample(self.settings, batch, torch.Generator().manual_seed(HELD_OUT_SEED))

    def decoder_input(self, tgt: torch.Tensor) -> torch.Tensor:
        """``[BOS] + tgt[:, :-1]``, (batch, T): what the decoder reads under teacher forcing."""
        tgt = self._check_tokens(tgt, "tgt")
        return _shift_right(tgt, self.settings.bos)

    def predict(self, src: torch.Tensor) -> torch.Tensor:
        """Greedy decoding, one token at a time: (batch, S) source -> (batch, S) predicted copy."""
        src = self._check_tokens(src, "src")
        out = torch.full((src.shape[0], 1), self.settings.bos, dtype=torch.long)
        with evaluating(self.model):
            for _ in range(src.shape[1]):
                out = torch.cat([out, self.model(src, out)[:, -1:].argmax(-1)], dim=1)
        return out[:, 1:]

    def cross_attention(self, src: torch.Tensor) -> torch.Tensor:
        """The last decoder layer's cross-attention under teacher forcing, (batch, heads, S, S).

        Queries are target positions, keys source positions; computed in eval mode, no grad.
        """
        src = self._check_tokens(src, "src")
        with evaluating(self.model):
            return _last_cross_attention(self.model, src, _shift_right(src, self.settings.bos))

    def _check_tokens(self, tokens, name: str) -> torch.Tensor:
        s = self.settings
        if not isinstance(tokens, torch.Tensor) or tokens.dtype not in (torch.int64, torch.int32):
            kind = f"a {tokens.dtype} tensor" if isinstance(tokens, torch.Tensor) else type(tokens).__name__
            raise TypeError(
                f"{name} must be an integer torch tensor of token ids, got {kind}; "
                f"make one with task.sample(batch) or task.held_out(batch)"
            )
        if tokens.ndim != 2 or not 1 <= tokens.shape[1] <= s.seq_len or tokens.shape[0] == 0:
            raise ValueError(
                f"{name} must have shape (batch, length) with batch >= 1 and 1 <= length <= "
                f"seq_len = {s.seq_len}, got {tuple(tokens.shape)}; for one sequence pass "
                "x[None]"
            )
        if tokens.min() < 0 or tokens.max() >= s.vocab_size:
            raise ValueError(
                f"{name} token ids must lie in [0, vocab_size) = [0, {s.vocab_size}), "
                f"got values from {int(tokens.min())} to {int(tokens.max())}"
            )
        return tokens.long()


def train_copy_task(
    *,
    seed: int = 0,
    steps: int = 300,
    seq_len: int = 10,
    vocab_size: int = 16,
    d_model: int = 32,
    nhead: int = 2,
    layers: int = 1,
    batch_size: int = 64,
    lr: float = 1e-2,
    snapshot_steps: Iterable[int] | None = None,
    threads: int | None = 1,
    progress: Callable[[int, float], object] | None = None,
) -> CopyTask:
    """Train a ``CopyTransformer`` from scratch to copy random sequences; returns a ``CopyTask``.

    >>> task = train_copy_task(seed=0)                  # defaults: a few seconds on 2 CPU cores
    >>> task.losses[-1] < 0.01, diagonal_mass(task.snapshots[300]) > 0.9
    (True, True)
    >>> from tqdm.auto import tqdm
    >>> bar = tqdm(total=300)
    >>> task = train_copy_task(progress=lambda step, loss: bar.update())

    - ``layers``: the number of encoder layers and of decoder layers.
    - Training: Adam at ``lr``, decayed linearly to zero; cross-entropy on every target token;
      a fresh batch of ``batch_size`` random sequences each step.
    - ``snapshot_steps``: after how many steps to keep the cross-attention on ``task.example``
      (default 0, 5, 10, 20, ... doubling, and ``steps``).
    - ``threads``: ``torch.set_num_threads`` for the run, restored after (1 by default, see the
      module docstring); None keeps the current count.
    - ``progress(step, loss)``: called after every step, step counted from 1.
    """
    settings = CopyTaskSettings(
        seed=seed,
        steps=steps,
        seq_len=seq_len,
        vocab_size=vocab_size,
        d_model=d_model,
        nhead=nhead,
        layers=layers,
        batch_size=batch_size,
        lr=lr,
    )
    keep_at = _snapshot_steps(snapshot_steps, steps)
    check_run(threads, progress)

    with intra_op_threads(threads):
        task = _untrained(settings)
        model, data = task.model, torch.Generator().manual_seed(seed)
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        # Decay to zero: a constant 1e-2 learns fast but spikes now and then, and a late spike costs accuracy.
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda done: 1 - done / max(steps, 1))
        for step in range(steps + 1):
            if step in keep_at:
                task.snapshots[step] = task.cross_attention(task.example[None])[0]
            if step == steps:
                break
            src = _sample(settings, batch_size, data)
            logits = model(src, _shift_right(src, settings.bos))  # (batch, seq_len, vocab_size)
            loss = nn.functional.cross_entropy(logits.flatten(0, 1), src.flatten())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            task.losses.append(loss.item())
            if progress is not None:
                progress(step + 1, task.losses[-1])
    model.eval()
    return task


def _untrained(settings: CopyTaskSettings) -> CopyTask:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        model = CopyTransformer(
            vocab_size=settings.vocab_size,
            seq_len=settings.seq_len,
            d_model=settings.d_model,
            nhead=settings.nhead,
            layers=settings.layers,
        )
    task = CopyTask(
        model, settings, losses=[], example=torch.empty(0), snapshots={}, threads=torch.get_num_threads()
    )
    task.example = task.held_out(1)[0]
    return task


def diagonal_mass(cross_attention) -> float:
    """The mean attention on the diagonal (query i -> key i): 1.0 when every query looks at its own position.

    >>> diagonal_mass(torch.eye(4))                          # (queries, keys)
    1.0
    >>> diagonal_mass(np.full((8, 2, 4, 4), 0.25))           # (batch, heads, queries, keys)
    0.25

    Averages over batch, heads and queries. Takes one layer's map, square (queries == keys),
    as every analysis function does (:meth:`visualizer.AttentionMaps.from_arrays`).
    """
    maps = layer_array(cross_attention, "diagonal_mass(): cross_attention")
    if maps.shape[-1] != maps.shape[-2]:
        raise ValueError(
            f"cross_attention needs as many queries as keys (a square map), "
            f"got {maps.shape[-2]} queries and {maps.shape[-1]} keys in shape {maps.shape}"
        )
    return float(np.diagonal(maps, axis1=-2, axis2=-1).mean(dtype=np.float64))


def _last_cross_attention(model: CopyTransformer, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
    """The last decoder layer's cross-attention, (batch, heads, queries, keys), via capture_attention."""
    from visualizer import capture_attention

    last = model.transformer.decoder.layers[-1]
    with capture_attention(model, layers=lambda path, module: module is last.multihead_attn) as maps:
        model(src, tgt)
    # The torch adapter declares nn.TransformerDecoderLayer's multihead_attn a decoder cross-attention.
    return maps.structured()["decoder"][-1]["cross_attention"]


def _sample(settings: CopyTaskSettings, batch: int, generator: torch.Generator | None) -> torch.Tensor:
    if not is_int(batch) or batch < 1:
        raise ValueError(f"batch must be a positive int, got {batch!r}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(
            f"generator must be a torch.Generator or None (torch's global generator), "
            f"got {type(generator).__name__}"
        )
    return torch.randint(0, settings.vocab_size, (batch, settings.seq_len), generator=generator)


def _shift_right(tgt: torch.Tensor, bos: int) -> torch.Tensor:
    return torch.cat([torch.full_like(tgt[:, :1], bos), tgt[:, :-1]], dim=1)


def _snapshot_steps(snapshot_steps: Iterable[int] | None, steps: int) -> set[int]:
    if snapshot_steps is None:
        doubling = [0] + [5 * 2**k for k in range(max(steps, 1).bit_length()) if 5 * 2**k < steps]
        return {*doubling, steps}
    if isinstance(snapshot_steps, (str, bytes)) or not isinstance(snapshot_steps, Iterable):
        raise TypeError(
            f"snapshot_steps must be an iterable of ints or None, got {type(snapshot_steps).__name__}"
        )
    chosen = set(snapshot_steps)
    bad = sorted(repr(step) for step in chosen if not is_int(step) or not 0 <= step <= steps)
    if bad:
        raise ValueError(
            f"snapshot_steps must be ints from 0 (before training) to steps = {steps}, got {', '.join(bad)}"
        )
    return chosen
