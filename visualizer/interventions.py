"""Does this head matter? Ablate and patch attention heads in any supported model, in place.

>>> from visualizer import ablate, head_effects
>>> with ablate(model, {"transformer.h.1.attn": [0, 1, 3]}):     # zero three heads' outputs
...     logits = model(ids).logits
>>> effects = head_effects(model, ids, metric=copy_loss)        # one ablation per head
>>> effects.values.shape                                        # (layers, heads)

A head's *output* is what it hands its module's output projection: the input of that
projection, split by head, (batch, heads, queries, head dim) (the seam's edit point, see
:mod:`visualizer._adapters._seam`; for ``nn.MultiheadAttention`` the output of its
attention kernel). Replacing one head's slice there changes that head's contribution and
nothing else, whatever kernel the module runs: zero-ablating head h equals zeroing the
columns of the output projection's weight that read head h.

- :func:`ablate` replaces heads' outputs inside a ``with`` block: by zeros, by their mean over
  a reference run (:func:`head_means`), or by what a function returns;
- :func:`record_heads` keeps every head's output of one run, and :func:`patch` puts them into
  another run (activation patching: the clean/corrupted experiment, for head outputs);
- :func:`head_effects` measures ``metric(ablated output) - metric(clean output)`` for one
  ablation per head, several ablations per forward; ``visualizer.plots.plot_head_effects``
  draws it.

Layers are selected as ``capture_attention(layers=...)`` selects them: a model-order index
among the attention modules, a module path, or a regular expression matching whole paths.
Modules whose output projection cannot be found, or that have something between their
heads and their projection (a norm, a gate), are refused with the reason, before the model
runs. Outside the blocks the model is exactly as before, also after an exception; ablations,
patches and captures nest in any order (a capture inside an ablation records the ablated
run's maps).
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from visualizer._adapters._seam import Seam, edit_points
from visualizer._calls import run
from visualizer._selection import select_targets
from visualizer._validate import indices, positive_int

__all__ = [
    "HeadEffects",
    "HeadMeans",
    "HeadRecord",
    "ablate",
    "head_effects",
    "head_means",
    "patch",
    "record_heads",
]

HOWS = ("zero", "mean")


class HeadRecord(Mapping):
    """Every head's output of one run, by module path: a tuple of tensors, one per call of the
    module, each (batch, heads, queries, head dim), detached. From :func:`record_heads`."""

    def __init__(self, outputs: dict[str, tuple], model_name: str) -> None:
        self._outputs = outputs
        self.model_name = model_name

    def __getitem__(self, name: str) -> tuple:
        try:
            return self._outputs[name]
        except KeyError:
            raise KeyError(
                f"this record holds no head outputs of {name!r}; "
                f"it holds {', '.join(self._outputs) or 'none'}"
            ) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._outputs)

    def __len__(self) -> int:
        return len(self._outputs)

    def __repr__(self) -> str:
        return f"<HeadRecord of {self.model_name}: {len(self)} attention modules>"


class HeadMeans(Mapping):
    """Each head's mean output over a reference run, by module path, from :func:`head_means`:
    (heads, head dim) tensors (the mean over the batch, the positions and the module's calls),
    or with ``per_position`` (heads, queries, head dim) tensors (the mean over the batch)."""

    def __init__(self, means: dict[str, torch.Tensor], per_position: bool, model_name: str) -> None:
        self._means = means
        self.per_position = per_position
        self.model_name = model_name

    def __getitem__(self, name: str) -> torch.Tensor:
        try:
            return self._means[name]
        except KeyError:
            raise KeyError(
                f"these means hold no head outputs of {name!r}; they hold {', '.join(self._means) or 'none'}"
            ) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._means)

    def __len__(self) -> int:
        return len(self._means)

    def __repr__(self) -> str:
        way = "per position" if self.per_position else "over positions"
        return f"<HeadMeans of {self.model_name}: {len(self)} attention modules, {way}>"


@dataclasses.dataclass(frozen=True)
class HeadEffects:
    """What :func:`head_effects` returns.

    ``values``: ``metric(ablated) - metric(clean)`` per head, a (layers, heads) float64 array
    when every layer has as many heads, else a list of (heads,) arrays; ``layers`` the module
    paths in model order (encoder-decoder models: in the order ``named_modules`` lists them,
    each decoder block's self-attention before its cross-attention); ``clean`` the metric of
    the clean run; ``how`` the ablation.
    """

    values: Any
    layers: tuple[str, ...]
    clean: float
    how: str

    def __array__(self, dtype=None, copy=None):
        if isinstance(self.values, list):
            raise ValueError(
                "the layers have different numbers of heads, so the effects are a list of per-layer arrays "
                "(effects.values), not one array"
            )
        return self.values if dtype is None else self.values.astype(dtype)

    def layer(self, selector: int | str) -> np.ndarray:
        """One layer's effects, (heads,), by model-order index or module path."""
        if isinstance(selector, str):
            if selector not in self.layers:
                raise KeyError(f"no layer {selector!r}; the layers: {', '.join(self.layers)}")
            position = self.layers.index(selector)
        else:
            position = indices(selector, len(self.layers), "HeadEffects.layer()", "layer")[0]
        return np.asarray(self.values[position])

    def top(self, k: int = 5) -> list[tuple[str, int, float]]:
        """The ``k`` heads whose ablation changed the metric most (by absolute value):
        ``[(layer path, head, effect), ...]``."""
        k = positive_int(k, "HeadEffects.top(): k")
        rows = [
            (name, head, float(value))
            for name, row in zip(self.layers, self.values)
            for head, value in enumerate(row)
        ]
        return sorted(rows, key=lambda row: -abs(row[2]))[:k]


class _Replacement:
    """The seam editor of ablate and patch: per module path, the heads and what replaces them."""

    def __init__(self, plan: dict[str, list[int]], replace: Callable) -> None:
        self.plan = plan
        self.replace = replace  # (name, heads, call, out) -> None, writes into out
        self.calls: dict[str, int] = {}

    def edit(self, call):
        name = call.target.name
        heads = self.plan.get(name)
        if not heads:
            return None
        index = self.calls.get(name, 0)
        self.calls[name] = index + 1
        out = call.output.clone()
        self.replace(name, heads, index, out)
        return out


def _model_name(model) -> str:
    return type(model).__name__


def _plan(model, heads, argument: str) -> tuple[dict[str, list[int]], dict[str, int]]:
    """``heads`` ({selector: [head, ...] | "all"}) resolved: module path -> head indices, and every
    edit point's head count; clear errors before the model runs."""
    if not isinstance(heads, Mapping):
        raise TypeError(
            f"{argument} takes a mapping from layer selectors (index, module path or regex) to a list of "
            f'head indices or "all", e.g. {{0: [1, 3], "blocks.5.attn": "all"}}, not {type(heads).__name__}'
        )
    if not heads:
        raise ValueError(f"{argument} is empty: name at least one layer and its heads")
    from visualizer._adapters import find_targets
    from visualizer._core import get_local

    found, _ = find_targets(model, get_local)
    if not found:
        raise ValueError(f"{_model_name(model)} has no attention module visualizer supports")
    plan: dict[str, Any] = {}
    for selector, chosen in heads.items():
        if isinstance(selector, (list, tuple)):
            raise TypeError(
                f"{argument}: a key is one layer selector, not a {type(selector).__name__} ({selector!r})"
            )
        for target in select_targets(found, selector, _model_name(model), f"{argument} key {selector!r}"):
            if target.name in plan:
                raise ValueError(
                    f"{argument} names {target.name} more than once (key {selector!r}); name each once"
                )
            plan[target.name] = chosen
    counts = {target.name: point.heads for target, point in edit_points(model, list(plan))}
    resolved = {}
    for name, chosen in plan.items():
        size = counts[name]
        if isinstance(chosen, str):
            if chosen != "all":
                raise ValueError(
                    f'{argument}[{name!r}]: heads are a list of indices or "all", not {chosen!r}'
                )
            resolved[name] = list(range(size))
        else:
            resolved[name] = indices(chosen, size, f"{argument}[{name!r}]", "head")
    return resolved, counts


def _heads_argument(function: str) -> str:
    return f"{function}(heads=...)"


@contextmanager
def ablate(model, heads, how: str | Callable = "zero", *, values: HeadMeans | None = None):
    """Replace the outputs of ``heads`` inside a ``with`` block; the model is as before after it.

    >>> with ablate(model, {0: [2], "blocks.5.attn": "all"}):
    ...     ablated = model(images)

    heads: ``{layer selector: [head, ...] or "all"}``, a selector being what
        ``capture_attention(layers=...)`` takes one of (a model-order index among the attention
        modules, a module path, a regular expression matching whole paths). A head is a query
        head (grouped-query models); in windowed layers every window's head is replaced.
    how: ``"zero"``; ``"mean"``, the head's mean output over a reference run (``values=``, from
        :func:`head_means`: over the batch and positions, or per position); or a function
        ``(layer path, head, output) -> replacement``, ``output`` that head's
        (batch, queries, head dim) output, the replacement the same shape (or broadcastable).
    """
    argument = _heads_argument("ablate")
    plan, _ = _plan(model, heads, argument)
    replace = _replacer(how, values, plan)
    with Seam(model, editors=[_Replacement(plan, replace)], modules=list(plan)):
        yield


def _replacer(how, values, plan) -> Callable:
    if callable(how) and not isinstance(how, str):

        def by_function(name, heads, index, out):
            for head in heads:
                given = how(name, head, out[:, head])
                if not isinstance(given, torch.Tensor):
                    raise TypeError(
                        f"ablate(how=...) returned a {type(given).__name__} for {name} head {head}; it must "
                        f"return a tensor shaped like the head's output, {tuple(out[:, head].shape)}"
                    )
                try:
                    out[:, head] = given
                except RuntimeError as error:
                    raise ValueError(
                        f"ablate(how=...) returned shape {tuple(given.shape)} for {name} head {head}; "
                        f"the head's output is {tuple(out[:, head].shape)} (batch, queries, head dim)"
                    ) from error

        return by_function
    if how not in HOWS:
        raise ValueError(
            f'ablate(how=...) takes "zero", "mean" or a function (layer, head, output), not {how!r}'
        )
    if how == "zero":
        if values is not None:
            raise ValueError('ablate(how="zero") takes no values=; they are for how="mean"')

        def zero(name, heads, index, out):
            out[:, heads] = 0

        return zero
    if not isinstance(values, HeadMeans):
        raise TypeError(
            'ablate(how="mean") needs values=visualizer.head_means(model, inputs), the heads\' mean outputs '
            f"over a reference run; got {type(values).__name__}"
        )
    missing = [name for name in plan if name not in values]
    if missing:
        raise KeyError(
            f"values= holds no means of {', '.join(missing)}; compute them with head_means(model, inputs) on "
            "the same model"
        )
    for name, chosen in plan.items():
        if isinstance(chosen, list) and chosen and max(chosen) >= values[name].shape[0]:
            raise ValueError(
                f"values= holds means of {values[name].shape[0]} heads for {name}, not of head "
                f"{max(chosen)}: they come from another model"
            )

    def mean(name, heads, index, out):
        means = values[name].to(out.device, out.dtype)
        if values.per_position:
            if means.shape[1] != out.shape[2]:
                raise ValueError(
                    f"the per-position means of {name} cover {means.shape[1]} positions, this run has "
                    f"{out.shape[2]}: positions must line up (or use head_means(per_position=False))"
                )
            out[:, heads] = means[heads].unsqueeze(0)
        else:
            out[:, heads] = means[heads][None, :, None, :]

    return mean


class _Keeping:
    """A seam editor that keeps what it sees: every call's per-head output, or running sums."""

    def __init__(self, per_position: bool | None) -> None:
        self.per_position = per_position  # None: keep every output
        self.kept: dict[str, list] = {}
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}

    def edit(self, call):
        name, out = call.target.name, call.output.detach()
        if self.per_position is None:
            self.kept.setdefault(name, []).append(out.clone())
            return None
        out = out.to(torch.float32 if out.device.type == "mps" else torch.float64)  # (no float64 on mps)
        total = out.sum(0) if self.per_position else out.sum((0, 2))
        count = out.shape[0] if self.per_position else out.shape[0] * out.shape[2]
        if name in self.sums:
            if self.sums[name].shape != total.shape:
                raise ValueError(
                    f"{name} ran with {out.shape[2]} positions in one call and "
                    f"{self.sums[name].shape[1]} in another; per-position means need equal lengths"
                )
            self.sums[name] += total
        else:
            self.sums[name] = total
        self.counts[name] = self.counts.get(name, 0) + count
        return None


def _layers(model, layers, function: str) -> list[str] | None:
    if layers is None:
        return None
    from visualizer._adapters import find_targets
    from visualizer._core import get_local

    found, _ = find_targets(model, get_local)
    return [t.name for t in select_targets(found, layers, _model_name(model), f"{function}(layers=...)")]


def record_heads(model, inputs, *, layers=None) -> HeadRecord:
    """Every head's output of one run of ``model`` on ``inputs`` (a tensor, a tuple of positional
    arguments or a dict of keyword arguments), without gradients: for :func:`patch`."""
    keeping = _Keeping(None)
    with torch.no_grad(), Seam(model, editors=[keeping], modules=_layers(model, layers, "record_heads")):
        run(model, inputs)
    if not keeping.kept:
        raise RuntimeError(f"none of {_model_name(model)}'s attention modules ran on these inputs")
    return HeadRecord({name: tuple(outs) for name, outs in keeping.kept.items()}, _model_name(model))


def head_means(model, inputs, *, layers=None, per_position: bool = False) -> HeadMeans:
    """Each head's mean output over a reference run, for ``ablate(how="mean", values=...)``.

    The mean is over the batch, the query positions and the module's calls: a (heads, head dim)
    vector per head, which fits any input length. ``per_position=True`` keeps the positions,
    (heads, queries, head dim), the mean over the batch only; ablating with it needs inputs of
    the same length.
    """
    if not isinstance(per_position, bool):
        raise TypeError(f"per_position must be True or False, not {per_position!r}")
    keeping = _Keeping(per_position)
    with torch.no_grad(), Seam(model, editors=[keeping], modules=_layers(model, layers, "head_means")):
        run(model, inputs)
    if not keeping.sums:
        raise RuntimeError(f"none of {_model_name(model)}'s attention modules ran on these inputs")
    means = {name: (total / keeping.counts[name]).float() for name, total in keeping.sums.items()}
    return HeadMeans(means, per_position, _model_name(model))


@contextmanager
def patch(model, source: HeadRecord, heads):
    """Replace the outputs of ``heads`` by those ``source`` recorded, inside a ``with`` block.

    >>> clean = record_heads(model, clean_ids)
    >>> with patch(model, clean, {"transformer.h.1.attn": [0]}):
    ...     patched = model(corrupted_ids)

    ``heads`` as in :func:`ablate`. The n-th call of a module in each forward of the model takes
    the n-th recorded output of that module. The positions must line up: the recorded output
    and this run's have the same number of queries, and the same batch (or a batch of one,
    used for every item).
    """
    if not isinstance(source, HeadRecord):
        raise TypeError(
            f"patch(source=...) takes a record_heads(model, inputs) result, not {type(source).__name__}"
        )
    plan, _ = _plan(model, heads, _heads_argument("patch"))
    missing = [name for name in plan if name not in source]
    if missing:
        raise KeyError(
            f"the source recorded no head outputs of {', '.join(missing)}; record them with record_heads"
        )

    def put(name, chosen, index, out):
        recorded = source[name]
        if index >= len(recorded):
            raise ValueError(
                f"{name} ran {index + 1} times in this forward, but the source recorded "
                f"{len(recorded)} call(s): the runs must line up"
            )
        kept = recorded[index]
        batch_ok = kept.shape[0] in (1, out.shape[0])
        if kept.shape[1:] != out.shape[1:] or not batch_ok:
            raise ValueError(
                f"positions do not line up for {name}: the source recorded head outputs of shape "
                f"{tuple(kept.shape)} (batch, heads, queries, head dim), this run has {tuple(out.shape)}; "
                "patch needs inputs of the same length (and the same batch, or a source batch of one)"
            )
        out[:, chosen] = kept[:, chosen].to(out.device, out.dtype)

    editor = _Replacement(plan, put)
    reset = model.register_forward_pre_hook(lambda module, args: editor.calls.clear())
    try:
        with Seam(model, editors=[editor], modules=list(plan)):
            yield
    finally:
        reset.remove()


def head_effects(
    model,
    inputs,
    metric: Callable,
    how: str | Callable = "zero",
    *,
    values: HeadMeans | None = None,
    layers=None,
    per_forward: int | None = None,
) -> HeadEffects:
    """``metric(ablated output) - metric(clean output)`` for one ablation per head.

    >>> effects = head_effects(vit, images, lambda out: out[:, 3].mean())    # class 3's logit
    >>> effects.values.shape                                                 # (layers, heads)
    >>> effects.top(3)

    inputs: a tensor, a tuple of positional arguments or a dict of keyword arguments.
    metric: the model's output -> one number (a float or a one-element tensor).
    how, values: as in :func:`ablate`.
    layers: which attention modules, as ``capture_attention(layers=...)`` takes them (None:
        all; each must have an edit point).
    per_forward: how many ablations share one forward, the inputs repeated along the batch
        axis (default: as many as keep the repeated batch at 16 items or fewer). Used only
        where the model allows it: every tensor of the clean output has the batch as its first
        axis, and the repeated run's head outputs are those of the clean run repeated;
        otherwise one forward per ablation.
    """
    if not callable(metric):
        raise TypeError(
            f"head_effects(metric=...) must be a function of the model's output, not {type(metric).__name__}"
        )
    names = _layers(model, layers, "head_effects")
    points = edit_points(model, names)
    counts = {target.name: point.heads for target, point in points}
    _replacer(
        how, values, {name: list(range(size)) for name, size in counts.items()}
    )  # checks, before running
    batch = _batch_size(inputs)
    if per_forward is None:
        per_forward = max(1, 16 // batch)
    per_forward = positive_int(per_forward, "head_effects(per_forward=...)")
    shapes = _Shapes()
    with torch.no_grad():
        with Seam(model, editors=[shapes], modules=list(counts)):
            output = run(model, inputs)
        clean = _number(metric(output), "clean")
    silent = [name for name in counts if name not in shapes.seen]
    if silent:
        raise RuntimeError(
            f"{', '.join(silent)} did not run on these inputs, so ablating its heads measures nothing"
        )
    ablations = [(name, head) for name in counts for head in range(counts[name])]
    effects = {name: np.zeros(counts[name]) for name in counts}
    if batch is None or not _batched_axes(output, batch):
        per_forward = 1
    start = 0
    while start < len(ablations):
        group = ablations[start : start + per_forward]
        measured = None
        if len(group) > 1:
            measured = _measure(model, inputs, metric, how, values, group, shapes.seen, batch)
            if measured is None:  # the repeated batch does not split back: one forward per ablation
                per_forward, group = 1, group[:1]
        if measured is None:
            ((name, head),) = group
            with torch.no_grad(), ablate(model, {name: [head]}, how, values=values):
                measured = [_number(metric(run(model, inputs)), f"{name} head {head}")]
        for (name, head), value in zip(group, measured):
            effects[name][head] = value - clean
        start += len(group)
    rows = [effects[name] for name in counts]
    same = len({len(row) for row in rows}) == 1
    return HeadEffects(
        np.stack(rows) if same else rows, tuple(counts), clean, how if isinstance(how, str) else "function"
    )


class _Shapes:
    """A seam editor that notes the shape of each call's per-head output, by module path."""

    def __init__(self) -> None:
        self.seen: dict[str, list[tuple]] = {}

    def edit(self, call):
        self.seen.setdefault(call.target.name, []).append(tuple(call.output.shape))


def _measure(model, inputs, metric, how, values, group, seen, batch) -> list[float] | None:
    """The metric of each ablation of ``group``, all in one forward on the inputs repeated
    ``len(group)`` times; None where the model does not allow it."""
    copies = len(group)
    repeated = _repeat(inputs, batch, copies)
    if repeated is None:
        return None
    plan: dict[str, list[tuple[int, int]]] = {}
    for slot, (name, head) in enumerate(group):
        plan.setdefault(name, []).append((slot, head))
    mismatch: list[str] = []
    calls: dict[str, int] = {}
    replace = _replacer(how, values, {name: [0] for name in plan})

    class Slots:
        def edit(self, call):
            name = call.target.name
            index = calls.get(name, 0)
            calls[name] = index + 1
            expected = seen.get(name, [])
            shape = tuple(call.output.shape)
            if (
                index >= len(expected)
                or shape[1:] != expected[index][1:]
                or shape[0] != copies * expected[index][0]
            ):
                mismatch.append(name)
                return None
            if name not in plan:
                return None
            out = call.output.clone()
            per = shape[0] // copies
            for slot, head in plan[name]:
                piece = out[slot * per : (slot + 1) * per]
                replace(name, [head], index, piece)
            return out

    with torch.no_grad(), Seam(model, editors=[Slots()], modules=list(seen)):
        output = run(model, repeated)
    if mismatch or any(calls.get(name, 0) != len(shapes) for name, shapes in seen.items()):
        return None
    pieces = _split(output, batch, copies)
    if pieces is None:
        return None
    return [_number(metric(piece), f"{name} head {head}") for piece, (name, head) in zip(pieces, group)]


def _batch_size(inputs) -> int | None:
    tensors = [x for x in _leaves(inputs) if isinstance(x, torch.Tensor) and x.dim() > 0]
    return tensors[0].shape[0] if tensors else None


def _leaves(value):
    """Every value inside nested dicts (a ModelOutput too), lists and tuples."""
    if isinstance(value, Mapping):
        for item in value.values():
            yield from _leaves(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _leaves(item)
    else:
        yield value


def _repeat(inputs, batch: int | None, copies: int):
    if batch is None:
        return None

    def repeat(value):
        if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == batch:
            return value.repeat(copies, *([1] * (value.dim() - 1)))
        if isinstance(value, Mapping):
            return {key: repeat(item) for key, item in value.items()}
        if isinstance(value, tuple):
            return tuple(repeat(item) for item in value)
        return value

    return repeat(inputs)


def _batched_axes(output, batch: int) -> bool:
    """Whether every tensor of a model's output has the batch as its first axis, so that a run on
    repeated inputs splits into one output per copy. (Other objects, such as a key-value cache,
    are left out of the pieces: None there.)"""
    tensors = [x for x in _leaves(output) if isinstance(x, torch.Tensor)]
    return bool(tensors) and all(x.dim() > 0 and x.shape[0] == batch for x in tensors)


def _split(output, batch: int, copies: int) -> list | None:
    if not _batched_axes(output, batch * copies):
        return None

    def piece(value, slot):
        if isinstance(value, torch.Tensor):
            return value[slot * batch : (slot + 1) * batch]
        if isinstance(value, Mapping):
            items = {key: piece(item, slot) for key, item in value.items()}
            try:
                return type(value)(**items)
            except TypeError:
                return items
        if isinstance(value, tuple) and hasattr(value, "_fields"):
            return type(value)(*(piece(item, slot) for item in value))
        if isinstance(value, (list, tuple)):
            return type(value)(piece(item, slot) for item in value)
        return None  # not a tensor: it cannot be split by copy

    return [piece(output, slot) for slot in range(copies)]


def _number(value, what: str) -> float:
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise TypeError(
                f"head_effects(metric=...) must return one number; it returned a tensor of shape "
                f"{tuple(value.shape)} ({what} run): reduce it, e.g. .mean()"
            )
        return float(value.detach().float())
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            "head_effects(metric=...) must return one number; "
            f"it returned {type(value).__name__} ({what} run)"
        )
    return float(value)
