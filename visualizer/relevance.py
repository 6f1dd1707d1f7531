"""Which input tokens drove this output: :func:`explain`, and :func:`faithfulness` to check it.

>>> from visualizer import explain, faithfulness
>>> relevance = explain(vit, images, target=207)        # class 207's logit, from the class token
>>> relevance.scores.shape                              # (batch, tokens), prefix tokens included
>>> check = faithfulness(vit, images, relevance, target=207)
>>> check.auc                                           # most- and least-relevant-first removal

An attention map says where a head looks, not what the output depended on. ``explain``
answers the second question with one of these methods:

- ``"attention_grad"``: Chefer, Gur & Wolf (ICCV 2021), "Generic Attention-model
  Explainability". Per layer, Ā = mean over heads of max(0, ∂y/∂A ⊙ A) (clamped per head,
  then averaged); R starts at the identity and R ← R + Ā·R layer by layer in forward order;
  the scores are row ``position`` of R. Encoder-decoder models follow that paper's rules:
  encoder self-attention updates R_ss, decoder self-attention R_qq and R_qs, and
  cross-attention adds R̄_qqᵀ·Ā·R̄_ss to R_qs, R̄ being R - I with its rows normalised to
  sum to 1, plus I; the scores are row ``position`` of R_qs (the source tokens), and
  ``decoder_scores`` row ``position`` of R_qq.
- ``"attnlrp"``: the conservative core of AttnLRP (Achtibat et al., ICML 2024), CP-LRP (Ali
  et al., ICML 2022): gradient x input at the hidden states entering the first block, summed over
  the features, with the attention probabilities and the normalisation layers' scales held
  constant, so that relevance passes through softmax attention by the values only and through
  the norms unchanged in sum. The probabilities are held constant through the seam: each
  layer's ``scaled_dot_product_attention`` runs on detached queries and keys, the output
  unchanged and the fused kernel kept (layers whose attention is computed eagerly are refused,
  each named); the norms by :mod:`visualizer._norms` (the forward values unchanged). lxt's full
  AttnLRP adds rules this does not (see the relevance guide). Scores are signed.
- ``"rollout"``: attention rollout (:func:`visualizer.analysis.rollout`), row ``position``.
- ``"attention"``: the last layer's mean-of-heads row at ``position`` (the last
  cross-attention of an encoder-decoder model): the baseline people use.
- ``"input_x_gradient"``: the gradient of the target with respect to the hidden states that
  enter the first block, times those states, summed over the features, per token.
- ``"integrated_gradients"``: captum's integrated gradients (the ``relevance`` extra), on
  the token embeddings for text (from the pad token's embedding, else zeros) and on the
  pixels for images (from black, summed per patch), per token.

**Exact, in linear memory, the fused kernel kept.** ``attention_grad`` never holds a layer's
(queries x keys) map or its gradient. The forward runs with each module's own kernel; a
gradient tap on each ``scaled_dot_product_attention`` call's output gets dO during the
backward pass, and with O = A·V, dA = dO·Vᵀ. A is rebuilt from the queries, keys and masks the
kernel received (:mod:`visualizer._lazy`), dA from dO and V, one block of query rows at a time;
the explained row r of R propagates backwards, r ← r + r·Ā, as the backward pass reaches each
layer, and only the rows where r is not zero are rebuilt (one row in the last layer).
Grouped-query heads use the values of their key head. Encoder-decoder models hold R_ss, R_qq
and R_qs whole: quadratic in the lengths, but never per layer.

The model is left as it was: its kernels, its attention implementation, its mode, its
parameters' ``requires_grad`` and ``.grad``. Gradients flow from a copy of the hidden states
entering the first block (a leaf of the explanation's own graph), so frozen parameters and
token-id inputs work, and no parameter gets a gradient.
"""

from __future__ import annotations

import contextlib
import dataclasses
import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from visualizer._adapters import block_of, find_targets
from visualizer._adapters._seam import KernelTaps
from visualizer._calls import run
from visualizer._norms import constant_scales
from visualizer._structure import Tokens

__all__ = ["METHODS", "Faithfulness", "Relevance", "explain", "faithfulness"]

#: The methods of :func:`explain`.
METHODS = ("attention_grad", "attnlrp", "rollout", "attention", "input_x_gradient", "integrated_gradients")
#: Query rows rebuilt at once by ``attention_grad`` (scores of one block: batch x heads x rows x keys).
BLOCK_ROWS = 256


@dataclasses.dataclass(frozen=True)
class Relevance:
    """What :func:`explain` returns.

    - ``scores``: (batch, tokens) relevance of every input token (prefix tokens included), a
      CPU float32 tensor; for an encoder-decoder model, of the source tokens;
    - ``method``, ``target`` (the int, or the callable's name), ``position`` (the query row
      explained, counted from 0) and ``position_rule`` (how it was chosen);
    - ``outputs``: (batch,) the target's value for each item;
    - ``contributions``: ``attention_grad`` on one stack: (layers, batch, tokens), what each
      layer added to the scores (forward order; the scores are the one-hot row of
      ``position`` plus their sum); None otherwise;
    - ``layers``: the attention modules, in model order;
    - ``layout``: the keys' layout the capture declared (:class:`visualizer.Tokens`: the
      prefix tokens and the patch grid of an image), for plots;
    - ``decoder_scores``: encoder-decoder models, (batch, target tokens): the decoder's own
      tokens (``attention_grad``: row ``position`` of R_qq; ``input_x_gradient``: the
      decoder's first block input); None otherwise.
    """

    scores: torch.Tensor
    method: str
    target: Any
    position: int
    position_rule: str
    outputs: torch.Tensor
    layers: tuple[str, ...]
    layout: Any
    contributions: torch.Tensor | None = None
    decoder_scores: torch.Tensor | None = None

    def __repr__(self) -> str:
        shape = tuple(self.scores.shape)
        return (
            f"<Relevance {self.method} of target {self.target!r} at position {self.position} "
            f"({self.position_rule}): scores {shape}>"
        )

    def patches(self, item: int = 0) -> np.ndarray:
        """Item ``item``'s scores of the image patches, (rows, cols), the prefix tokens left out."""
        grid = getattr(self.layout, "grid", None)
        if grid is None:
            raise ValueError("these scores are not over image patches: the capture declared no patch grid")
        prefix = self.layout.prefix
        scores = self.scores[item, prefix:]
        if scores.numel() != grid[0] * grid[1]:
            raise ValueError(f"{scores.numel()} patch scores do not fill the {grid[0]} x {grid[1]} grid")
        return scores.reshape(grid).numpy()


def explain(
    model,
    inputs,
    target,
    *,
    method: str = "attention_grad",
    position: int | None = None,
    steps: int = 50,
) -> Relevance:
    """Which input tokens drove ``target``: a :class:`Relevance` (see the module docstring).

    inputs: what the model is called with: a tensor, a tuple of positional arguments, or a
        dict of keyword arguments.
    target: an int, a class logit (``output`` or ``output.logits`` of shape (batch, classes)),
        or for a language model the logit of that token at ``position`` ((batch, tokens,
        vocabulary)); or a callable from the model's output to one scalar per batch item (a
        (batch,) tensor): a cosine similarity of embeddings, a logit difference. (``integrated_gradients``
        calls it on the outputs of ``steps`` copies of the batch at once, step after step: a
        callable holding per-item tensors must repeat them, ``t.repeat(len(out) // len(t), 1)``.)
    position: the query row explained; default: the class token for models that have one,
        the last position for causal language models, the first token of other transformers
        encoders ([CLS]); other models need it. Negative counts from the end.
    steps: the integration steps of ``integrated_gradients``.
    """
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"explain(method=...) must be one of {', '.join(METHODS)}, not {method!r}")
    if not (callable(target) or _is_int(target)):
        raise TypeError(
            f"explain(target=...) takes an int (a logit index) or a callable from the model's output to one "
            f"scalar per batch item, not {type(target).__name__}"
        )
    if _is_int(target) and target < 0:
        raise IndexError(f"explain(target={target}): a logit index is at least 0")
    if position is not None and not _is_int(position):
        raise TypeError(f"explain(position=...) must be an int or None, not {type(position).__name__}")
    if not _is_int(steps) or steps < 1:
        raise ValueError(f"explain(steps=...) must be an int of at least 1, not {steps!r}")
    if method == "integrated_gradients":
        _captum()
    logits = _logit_count(model) if _is_int(target) else None
    if logits == 0:
        raise ValueError(
            f"{type(model).__name__}'s output has no logits to take target={target} from; pass a callable "
            "target (the model's output -> one scalar per batch item)"
        )
    if logits is not None and target >= logits:
        raise IndexError(
            f"explain(target={target}) is out of range: the model has {logits} logits "
            f"(valid: 0..{logits - 1})"
        )
    targets, refusals = find_targets(model, _core())
    if not targets:
        raise ValueError(f"{type(model).__name__} has no attention module visualizer supports")
    if refusals:  # a layer left out would change every method that follows the layers
        listed = "; ".join(f"{refusal.name}: {refusal.reason}" for refusal in refusals[:3])
        raise ValueError(
            f"explain() follows every attention layer, and {len(refusals)} of {type(model).__name__}'s "
            f"are not supported ({listed}{'; ...' if len(refusals) > 3 else ''})"
        )
    _check_layouts(targets)
    if method == "attnlrp":
        _check_kernels(model, targets)
    encoder_decoder = any(t.role == "decoder" or t.kind == "cross" for t in targets)
    length = _text_length(inputs)
    if position is not None and length is not None and not encoder_decoder:
        _position(position, length)  # out of range: before any work
    tap = _AttentionGrad(encoder_decoder) if method == "attention_grad" else None
    gradients = method in ("attention_grad", "attnlrp", "input_x_gradient")
    from visualizer import capture_attention

    eager = {t.name for t in targets if t.eager_because is not None} if tap is not None else set()
    kernel = [t.name for t in targets if t.name not in eager]
    invoked: list = tap.invoked if tap is not None else []
    with contextlib.ExitStack() as stack:
        leaves = stack.enter_context(_Leaves(model, targets)) if gradients else None
        if tap is not None and kernel:
            stack.enter_context(KernelTaps(model, [tap], modules=kernel))
        if method == "attnlrp":  # A and the norms' scales constant; then gradient x input
            stack.enter_context(KernelTaps(model, [_ConstantAttention()], modules=kernel))
            stack.enter_context(constant_scales(model))
        stack.enter_context(_invocations(targets, invoked))
        # every layer: the layout, the lengths, the baselines' maps; eager maps kept with their graph
        maps = stack.enter_context(capture_attention(model, keep_grad=bool(eager)))
        with torch.set_grad_enabled(gradients):
            output = run(model, inputs)
        ran = [t for t in targets if any(t is other for other in invoked)]
        if not ran:
            raise ValueError(f"none of {type(model).__name__}'s attention modules ran on these inputs")
        first = ran[0].name
        decoder = next((t.name for t in ran if t.role == "decoder" and t.kind == "self"), first)
        tokens, rows = _lengths(maps, first, decoder, encoder_decoder)
        if leaves is not None and not encoder_decoder:
            _check_tokens(leaves, first, tokens)
        position, rule = _default_position(model, maps, first, position, rows, encoder_decoder)
        values = _values(output, target, position)
        batch = values.shape[0]
        if tap is not None:
            tap.start(batch, tokens, position, maps, eager)
        grads = _backward(values, leaves) if gradients else None
        del output
    if method == "integrated_gradients":
        scores, decoder_scores, contributions = (
            _integrated_gradients(model, inputs, target, position, maps.layout(first), steps),
            None,
            None,
        )
    else:
        scores, decoder_scores, contributions = _scores(
            method, maps, ran, leaves, grads, tap, encoder_decoder, position, batch
        )
    layout = maps.layout(first)
    return Relevance(
        scores=scores.detach().float().cpu(),
        method=method,
        target=target if _is_int(target) else getattr(target, "__name__", repr(target)),
        position=position,
        position_rule=rule,
        outputs=values.detach().float().cpu(),
        layers=tuple(t.name for t in targets),
        layout=layout,
        contributions=None if contributions is None else contributions.float().cpu(),
        decoder_scores=None if decoder_scores is None else decoder_scores.detach().float().cpu(),
    )


# -- attnlrp: the attention probabilities held constant -------------------------------------------


class _ConstantAttention:
    """A gradient tap that only detaches each kernel call's queries and keys: the probabilities A are
    constants, so the gradient of O = A·V flows to V alone (the values are unchanged)."""

    detach_scores = True

    def gradient(self, call, grad) -> None:
        """Nothing to read: the detaching is the rule."""


def _check_kernels(model, targets) -> None:
    """attnlrp holds A constant by running the kernel on detached queries and keys: every attention
    layer must run in one scaled_dot_product_attention call."""
    eager = [f"{t.name} ({t.eager_because})" for t in targets if t.eager_because is not None]
    if eager:
        listed = "; ".join(eager[:4]) + ("; ..." if len(eager) > 4 else "")
        raise ValueError(
            f"method='attnlrp' holds the attention probabilities constant by running each layer's "
            f"scaled_dot_product_attention on detached queries and keys, and {len(eager)} of "
            f"{type(model).__name__}'s attention layers compute their attention eagerly: {listed}. "
            "Load the model with its sdpa attention (attn_implementation='sdpa', timm's fused_attn) or use "
            "method='attention_grad'"
        )


# -- the attention_grad tap -----------------------------------------------------------------


class _Entry:
    """One attention call in forward order: a kernel call (its event; the gradient is dO) or an
    eager map (the probabilities the module computed; the gradient is dA)."""

    __slots__ = ("call", "mean", "target", "weights")

    def __init__(self, target, call=None, weights=None) -> None:
        self.target, self.call, self.weights, self.mean = target, call, weights, None

    def relevance(self, grad, row):
        """row·Ā (one stack) or Ā (``row`` None), from this call's gradient."""
        if self.call is not None:
            return _mean_relevance(self.call, grad, row)
        mean = (self.weights.detach().float() * grad.float()).clamp_(min=0).mean(1)  # (batch, queries, keys)
        if row is None:
            return mean
        if mean.shape[-1] != mean.shape[-2] or mean.shape[-2] != row.shape[1]:
            raise ValueError(
                f"{self.target.name} maps {mean.shape[-2]} queries to {mean.shape[-1]} keys: the one-stack "
                f"rule needs the {row.shape[1]} tokens on both sides"
            )
        return torch.einsum("bq,bqk->bk", row, mean)


class _AttentionGrad:
    """A gradient tap that propagates the explained row of R as the backward pass reaches each
    attention call (one stack), or keeps each call's Ā for the encoder-decoder rules. Kernel calls
    report through :class:`KernelTaps`; eager maps (kept with their graph by a capture) through
    hooks on the probabilities. ``invoked`` lists the attention modules in the order they ran."""

    detach_scores = False

    def __init__(self, encoder_decoder: bool) -> None:
        self.encoder_decoder = encoder_decoder
        self.kernel: list = []  # the kernel calls, forward order
        self.invoked: list = []  # the targets, in the order their forwards started
        self.entries: list[_Entry] = []
        self.grads: dict[int, Any] = {}
        self.row: Any = None
        self.next = -1

    def called(self, call) -> None:
        if call.dropout:
            raise ValueError(
                f"{call.target.name} ran attention dropout (p={call.dropout:g}): the model is in training "
                "mode; call model.eval() before explain()"
            )
        self.kernel.append(call)

    def start(self, batch: int, tokens: int, position: int, maps, eager: set) -> None:
        """After the forward: the calls in forward order, hooks on the eager maps."""
        import collections

        calls = collections.defaultdict(collections.deque)
        for call in self.kernel:
            calls[call.target.name].append(call)
        kept = {name: collections.deque(maps.calls(name)) for name in eager}
        for target in self.invoked:
            if target.name in kept:
                if not kept[target.name]:
                    continue
                weights = kept[target.name].popleft()
                if not getattr(weights, "requires_grad", False):
                    raise ValueError(
                        f"{target.name}'s attention map carries no gradient (it is not computed from the "
                        "inputs with autograd), so it cannot be differentiated"
                    )
                entry = _Entry(target, weights=weights)
                weights.register_hook(self._hook(entry))
                self.entries.append(entry)
            elif calls[target.name]:
                self.entries.append(_Entry(target, call=calls[target.name].popleft()))
        if not self.entries:
            raise ValueError("no attention layer ran on these inputs")
        if not self.encoder_decoder:
            device = self.entries[0].call.query.device if self.entries[0].call is not None else None
            self.row = torch.zeros(batch, tokens, dtype=torch.float32, device=device)
            self.row[:, position] = 1.0
        self.keys = {id(entry.call): entry for entry in self.entries if entry.call is not None}
        self.next = len(self.entries) - 1

    def _hook(self, entry: _Entry):
        def hook(grad) -> None:
            self._arrived(entry, grad)

        return hook

    def gradient(self, call, grad) -> None:
        entry = self.keys.get(id(call))
        if entry is not None:
            self._arrived(entry, grad)

    def _arrived(self, entry: _Entry, grad) -> None:
        self.grads[id(entry)] = grad.detach()
        while self.next >= 0 and id(self.entries[self.next]) in self.grads:
            current = self.entries[self.next]
            grad = self.grads.pop(id(current))
            if self.encoder_decoder:
                current.mean = current.relevance(grad, None)
            else:
                current.mean = current.relevance(grad, self.row)
                self.row = self.row + current.mean
            self.next -= 1


def _mean_relevance(call, grad, row):
    """Ā = mean over heads of max(0, dA ⊙ A) for one call, from its queries, keys and masks (A) and
    from dO and its values (dA = dO·Vᵀ), one block of query rows at a time. With ``row`` (batch,
    queries): returns row·Ā (batch, keys), visiting only the rows where ``row`` is not zero; else
    the whole Ā (batch, queries, keys)."""
    query, value = call.query, call.value
    if query.dim() != 4 or value is None or value.dim() != 4 or grad.dim() != 4:
        raise ValueError(f"{call.target.name}: its kernel call is not (batch, heads, tokens, head dim)")
    recipe = call.recipe().detach()
    batch, heads, queries, _ = grad.shape
    keys = recipe.shape[-1]
    value = value.detach().float()
    groups = heads // value.shape[1]
    if row is not None and row.shape[1] != queries:
        raise ValueError(
            f"{call.target.name} has {queries} queries, but the tokens explained are {row.shape[1]}: its "
            "queries are not the tokens of the stack (pooled or merged tokens)"
        )
    if row is not None and keys != queries:
        raise ValueError(
            f"{call.target.name} attends from {queries} queries to {keys} keys: the one-stack rule needs the "
            "same tokens on both sides"
        )
    out = (  # (float32 whatever torch's default dtype: the blocks below are float32)
        torch.zeros(batch, keys, device=grad.device, dtype=torch.float32)
        if row is not None
        else torch.zeros(batch, queries, keys, device=grad.device, dtype=torch.float32)
    )
    for start in range(0, queries, BLOCK_ROWS):
        stop = min(start + BLOCK_ROWS, queries)
        if row is not None and not bool(row[:, start:stop].any()):
            continue
        weights = recipe.rows(slice(start, stop)).float()  # (batch, heads, rows, keys)
        block = grad[:, :, start:stop].float()
        if groups > 1:  # query head h reads key head h // groups
            count = stop - start
            folded = block.reshape(batch, heads // groups, groups * count, -1)
            gradient = torch.matmul(folded, value.transpose(-1, -2)).reshape(batch, heads, count, keys)
        else:
            gradient = torch.matmul(block, value.transpose(-1, -2))
        mean = gradient.mul_(weights).clamp_(min=0).mean(1)  # (batch, rows, keys)
        if row is not None:
            out += torch.einsum("br,brk->bk", row[:, start:stop], mean)
        else:
            out[:, start:stop] = mean
    return out


def _encoder_decoder_scores(tap: _AttentionGrad, batch: int, position: int):
    """Chefer et al.'s rules for encoder-decoder models, in forward order; rows ``position`` of
    R_qs (source tokens) and R_qq (target tokens)."""
    sources = targets_ = None
    for entry in tap.entries:
        role, kind, shape = entry.target.role, entry.target.kind, tuple(entry.mean.shape[-2:])
        if role is None and kind == "self":
            raise ValueError(
                f"{entry.target.name} belongs to neither the encoder nor the decoder its model declares: the "
                "encoder-decoder rules need one encoder stack and one decoder stack"
            )
        if kind == "self" and role == "encoder":
            sources = sources or shape[0]
            expected = (sources, sources)
        elif kind == "self":
            targets_ = targets_ or shape[0]
            expected = (targets_, targets_)
        else:
            targets_, sources = targets_ or shape[0], sources or shape[1]
            expected = (targets_, sources)
        if shape != expected:
            raise ValueError(
                f"{entry.target.name} maps {shape[0]} queries to {shape[1]} keys where the encoder-decoder "
                f"rules need {expected[0]} to {expected[1]}: its stacks are not one encoder and one decoder"
            )
    if targets_ is None:
        raise ValueError("an encoder-decoder explanation needs the decoder's attention; none ran")
    device = tap.entries[0].mean.device
    r_ss = torch.eye(sources, device=device, dtype=torch.float32).expand(batch, sources, sources).clone()
    r_qq = torch.eye(targets_, device=device, dtype=torch.float32).expand(batch, targets_, targets_).clone()
    r_qs = torch.zeros(batch, targets_, sources, device=device, dtype=torch.float32)
    for entry in tap.entries:
        mean = entry.mean
        if entry.target.kind == "cross":
            r_qs = r_qs + _normalised(r_qq).transpose(-1, -2) @ mean @ _normalised(r_ss)
        elif entry.target.role == "decoder":
            r_qq = r_qq + mean @ r_qq
            r_qs = r_qs + mean @ r_qs
        else:
            r_ss = r_ss + mean @ r_ss
    return r_qs[:, position], r_qq[:, position]


def _normalised(relevance):
    """R̄ = (R - I) with rows normalised to sum to 1 (rows summing to 0 stay 0), plus I."""
    eye = torch.eye(relevance.shape[-1], device=relevance.device, dtype=relevance.dtype)
    residual = relevance - eye
    sums = residual.sum(-1, keepdim=True)
    return torch.where(sums != 0, residual / torch.where(sums != 0, sums, 1.0), 0.0) + eye


@contextlib.contextmanager
def _invocations(targets, invoked: list):
    """While open, ``invoked`` gets each target as its forward starts."""
    handles = [
        target.module.register_forward_pre_hook(lambda module, args, target=target: invoked.append(target))
        for target in targets
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


# -- the leaves: a copy of the hidden states entering each stack's first block -----------------


class _Leaves:
    """Forward pre-hooks on the first block of each stack (the blocks of one container: an encoder,
    a decoder, a vision tower, the one stack): its hidden-state input is replaced, on its first
    call, by a detached copy that requires grad. ``self.leaves``: [(stack, role, tensor)] in the
    order they were made; ``stack_of[target name]`` the stack of each target."""

    def __init__(self, model, targets) -> None:
        self.model = model
        named = dict(model.named_modules())
        self.stack_of: dict[str, str] = {}
        firsts: dict = {}
        for target in targets:
            path = target.block if target.block in named else block_of(target.name, named)
            stack = path.rsplit(".", 1)[0] if "." in path else ""
            self.stack_of[target.name] = stack
            if stack not in firsts:
                firsts[stack] = (target, path)
        self.blocks = [
            (stack, target.role, named.get(path, target.module), path)
            for stack, (target, path) in firsts.items()
        ]
        self.leaves: list = []
        self.handles: list = []

    def __enter__(self) -> _Leaves:
        for stack, role, block, path in self.blocks:
            self.handles.append(
                block.register_forward_pre_hook(self._hook(stack, role, path), with_kwargs=True)
            )
        return self

    def __exit__(self, *exc) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles = []

    def leaf_of(self, name: str):
        """The leaf of the stack target ``name`` belongs to, or None where that stack did not run."""
        stack = self.stack_of.get(name)
        return next(((leaf, index) for index, (key, _, leaf) in enumerate(self.leaves) if key == stack), None)

    def _hook(self, stack, role, path):
        def pre_hook(module, args, kwargs):
            if any(key == stack for key, _, _ in self.leaves):
                return None  # a block called again (shared weights): its first input is the leaf
            if args and isinstance(args[0], torch.Tensor) and args[0].is_floating_point():
                return (self._leaf(stack, role, args[0]), *args[1:]), kwargs
            for name in ("hidden_states", "x", "src", "tgt"):
                value = kwargs.get(name)
                if isinstance(value, torch.Tensor) and value.is_floating_point():
                    return args, {**kwargs, name: self._leaf(stack, role, value)}
            raise ValueError(
                f"{path} is called without a floating-point hidden-state tensor first, so explain() cannot "
                "follow gradients from its input"
            )

        return pre_hook

    def _leaf(self, stack, role, hidden):
        leaf = hidden.detach().requires_grad_(True)
        self.leaves.append((stack, role, leaf))
        return leaf


def _check_tokens(leaves: _Leaves, first: str, tokens: int) -> None:
    """The one-stack rules follow the model's tokens from layer to layer: the hidden states entering
    the stack must be (batch, tokens, features) (or sequence-first) with the attention's tokens."""
    found = leaves.leaf_of(first)
    if found is None:
        return
    shape = tuple(found[0].shape)
    if len(shape) != 3 or tokens not in shape[:2]:
        raise ValueError(
            f"the hidden states entering the stack of {first} are {shape}, not (batch, {tokens} tokens, "
            "features): the attention's tokens are not the model's tokens (a convolutional feature map, "
            "pooled or merged tokens), so relevance cannot be followed from layer to layer"
        )


def _backward(values, leaves: _Leaves):
    tensors = [leaf for _, _, leaf in leaves.leaves]
    if not values.requires_grad or not tensors:
        blocks = ", ".join(path for _, _, _, path in leaves.blocks)
        raise ValueError(
            f"no gradient to follow: the target does not depend, through autograd, on the hidden states "
            f"entering {blocks} (a layer computed under torch.no_grad or detached cannot be differentiated; "
            "is the target a function of the model's output?)"
        )
    return torch.autograd.grad(values.sum(), tensors, allow_unused=True)


# -- the methods' scores -------------------------------------------------------------------------


def _scores(method, maps, targets, leaves, grads, tap, encoder_decoder, position, batch):
    """(scores, decoder scores, per-layer contributions) of ``method``."""
    if method == "attention_grad":
        if tap.next >= 0:
            missing = [entry.target.name for entry in tap.entries[: tap.next + 1]]
            raise ValueError(
                f"no gradient reached {', '.join(dict.fromkeys(missing))}: the target does not depend on "
                "those layers' attention (or they cannot be differentiated)"
            )
        if encoder_decoder:
            scores, decoder = _encoder_decoder_scores(tap, batch, position)
            return scores, decoder, None
        contributions = torch.stack([entry.mean for entry in tap.entries])
        return tap.row, None, contributions
    if method in ("input_x_gradient", "attnlrp"):  # the stack of the first layer that ran (and the decoder's)

        def scores_of(name):
            found = leaves.leaf_of(name)
            if found is None:
                raise ValueError(f"the stack of {name} did not run, so its input has no gradient")
            leaf, index = found
            grad = grads[index]
            return (grad * leaf).sum(-1) if grad is not None else torch.zeros(leaf.shape[:-1])

        if encoder_decoder:
            decoder = next((t.name for t in targets if t.role == "decoder"), None)
            encoder = next((t.name for t in targets if t.role != "decoder"), decoder)
            return scores_of(encoder), scores_of(decoder) if decoder else None, None
        return scores_of(targets[0].name), None, None
    if method == "attention":  # the last layer (of an encoder-decoder model: its last cross-attention)
        rows = maps.rows(targets[-1].name, position, call=-1)  # (batch, heads, 1, keys)
        return rows.float().mean(1)[:, 0], None, None
    if encoder_decoder:
        raise ValueError(
            "method='rollout' is defined for one stack of self-attention, not an encoder-decoder model"
        )
    from visualizer import AttentionMaps
    from visualizer.analysis import rollout

    ran = (
        AttentionMaps.from_arrays({t.name: maps[t.name] for t in targets})
        if len(targets) < len(maps)
        else maps
    )
    result = torch.as_tensor(np.asarray(rollout(ran)))
    if result.dim() == 2:
        result = result.unsqueeze(0)
    return result[:, position], None, None


def _integrated_gradients(model, inputs, target, position, layout, steps):
    """captum's integrated gradients, per token: on the token embeddings (text), the pixels
    (images, summed per patch) or a float input (summed over its last axis)."""
    captum = _captum()
    main, extra, rebuild = _main_input(inputs)

    def forward(tensor, *extra):
        return _values(run(model, rebuild(tensor, extra)), target, position)

    if not main.is_floating_point():  # token ids: the embeddings
        embeddings = getattr(model, "get_input_embeddings", lambda: None)()
        if embeddings is None:
            raise ValueError(
                f"{type(model).__name__} takes integer inputs but has no get_input_embeddings(): "
                "integrated_gradients needs the embedding layer"
            )
        pad = _baseline_token(model)
        baseline = torch.full_like(main, pad) if pad is not None else None
        method = captum.LayerIntegratedGradients(forward, embeddings)
        with torch.enable_grad():
            attributions = method.attribute(
                main, baselines=baseline, additional_forward_args=extra, n_steps=steps
            )
        return attributions.sum(-1)
    method = captum.IntegratedGradients(forward)
    with torch.enable_grad():
        attributions = method.attribute(main, additional_forward_args=extra, n_steps=steps)
    grid = getattr(layout, "grid", None)
    if main.dim() == 4 and grid is not None:  # an image: sum per patch, the prefix tokens 0
        batch, _, height, width = main.shape
        rows, cols = grid
        patches = attributions.sum(1).reshape(batch, rows, height // rows, cols, width // cols).sum((2, 4))
        prefix = torch.zeros(batch, layout.prefix, dtype=patches.dtype, device=patches.device)
        return torch.cat([prefix, patches.reshape(batch, -1)], dim=1)
    if main.dim() == 3:
        return attributions.sum(-1)
    raise ValueError(
        f"integrated_gradients cannot place attributions of a {tuple(main.shape)} input on tokens: it takes "
        "token ids, images with a declared patch grid, or (batch, tokens, features) inputs"
    )


# -- helpers ---------------------------------------------------------------------------------------


def _core():
    from visualizer._core import get_local

    return get_local


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _captum():
    try:
        import captum.attr
    except ImportError:
        raise ImportError(
            'method="integrated_gradients" needs captum: pip install -c constraints.txt '
            '"transformer-visualizer[relevance]"'
        ) from None
    return captum.attr


def _main_input(inputs):
    """The tensor integrated gradients integrates over (and faithfulness replaces tokens of), the
    other inputs in order, and how to put a replacement and the others back together."""
    if isinstance(inputs, torch.Tensor):
        return inputs, (), lambda tensor, extra: tensor
    if isinstance(inputs, tuple):
        if not inputs or not isinstance(inputs[0], torch.Tensor):
            raise TypeError("integrated_gradients takes a tensor first among positional inputs")
        return inputs[0], inputs[1:], lambda tensor, extra: (tensor, *extra)
    if isinstance(inputs, Mapping):
        for key in ("input_ids", "pixel_values", "inputs_embeds", "x"):
            if isinstance(inputs.get(key), torch.Tensor):
                keys = [k for k in inputs if k != key]
                extras = tuple(inputs[k] for k in keys)
                return inputs[key], extras, lambda tensor, extra: {key: tensor, **dict(zip(keys, extra))}
    raise TypeError(
        "integrated_gradients takes a tensor, a tuple of tensors, or a dict with input_ids or pixel_values"
    )


def _baseline_token(model) -> int | None:
    config = getattr(model, "config", None)
    for name in ("pad_token_id", "mask_token_id", "bos_token_id"):
        value = getattr(config, name, None)
        if _is_int(value) and value >= 0:
            return int(value)
    return None


def _logit_count(model) -> int | None:
    """How many logits an int target indexes, where the model says so before running: 0 for a
    model whose output has none (a timm model without a head, a transformers base model)."""
    if hasattr(model, "num_classes") and _is_int(model.num_classes) and hasattr(model, "forward_head"):
        return int(model.num_classes)  # timm
    config = getattr(model, "config", None)
    if config is None or not hasattr(model, "get_output_embeddings"):
        return None
    head = model.get_output_embeddings()
    if head is not None:
        return int(getattr(head, "out_features", 0) or head.weight.shape[0])
    name = type(model).__name__
    if "For" in name and "Classification" in name:
        return int(getattr(config, "num_labels", 0) or 0) or None
    if "For" not in name:
        return 0  # a base model: hidden states, no logits
    return None


def _text_length(inputs) -> int | None:
    ids = None
    if isinstance(inputs, Mapping):
        ids = inputs.get("input_ids")
    elif isinstance(inputs, torch.Tensor) and not inputs.is_floating_point():
        ids = inputs
    return int(ids.shape[-1]) if isinstance(ids, torch.Tensor) and ids.dim() == 2 else None


def _position(position: int, length: int) -> int:
    if not -length <= position < length:
        raise IndexError(
            f"explain(position={position}) is outside the sequence of {length} tokens "
            f"(valid: 0..{length - 1}, or {-length}..-1)"
        )
    return position % length


def _check_layouts(targets) -> None:
    odd = [f"{t.name} ({type(t.layout).__name__})" for t in targets if not isinstance(t.layout, Tokens)]
    if odd:
        raise ValueError(
            f"explain() works on attention over the model's tokens; {', '.join(odd[:4])} declare windowed or "
            "channel attention, whose rows are not the model's tokens"
        )


def _lengths(maps, first: str, decoder: str, encoder_decoder: bool) -> tuple[int, int]:
    """(tokens explained, query rows of the explained position): the keys and queries of the
    stack's first attention module; for encoder-decoder models, the first module's keys (the
    source) and the decoder's first self-attention's queries (the target)."""
    keys = maps.shape(first, 0)[-1]
    return keys, maps.shape(decoder if encoder_decoder else first, 0)[-2]


def _default_position(model, maps, first: str, position, rows: int, encoder_decoder: bool) -> tuple[int, str]:
    if position is not None:
        return _position(position, rows), "given"
    layout = maps.layout(first)
    if not encoder_decoder and getattr(layout, "prefix", 0):
        return 0, "the class token"
    if encoder_decoder:
        return rows - 1, "the last target position"
    if _is_causal(model, maps, first):
        return rows - 1, "the last position (a causal language model)"
    if getattr(model, "config", None) is not None:
        return 0, "the first token ([CLS] of a transformers encoder)"
    raise ValueError(
        f"{type(model).__name__} declares no class token and is not a causal language model: say which query "
        "row to explain with position="
    )


def _is_causal(model, maps, first: str) -> bool:
    """A causal language model: so its class or config says, or its first attention call shows (the
    first query sees only the first key)."""
    config = getattr(model, "config", None)
    if getattr(config, "is_decoder", False):
        return True
    try:
        from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
    except ImportError:  # pragma: no cover - transformers is in the models extra
        names: set = set()
    else:
        names = set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values())
    if type(model).__name__ in names:
        return True
    row = maps.rows(first, 0, call=0)  # (batch, heads, 1, keys)
    return row.shape[-1] > 1 and not bool(row[..., 1:].any())


def _values(output, target, position: int):
    """The target's value per batch item, (batch,)."""
    if callable(target):
        values = target(output)
        if not isinstance(values, torch.Tensor) or values.dim() > 1:
            shape = tuple(values.shape) if isinstance(values, torch.Tensor) else type(values).__name__
            raise ValueError(
                "the target callable must return one scalar per batch item, a (batch,) tensor; "
                f"it returned {shape}"
            )
        return values.reshape(-1)
    logits = output if isinstance(output, torch.Tensor) else getattr(output, "logits", None)
    if (
        logits is None
        and isinstance(output, (tuple, list))
        and output
        and isinstance(output[0], torch.Tensor)
    ):
        logits = output[0]
    if not isinstance(logits, torch.Tensor) or logits.dim() not in (2, 3):
        raise ValueError(
            f"the model's output has no logits to take target={target} from ({type(output).__name__}); "
            "pass a "
            "callable target (the model's output -> one scalar per batch item)"
        )
    if target >= logits.shape[-1]:
        raise IndexError(
            f"explain(target={target}) is out of range: the model has {logits.shape[-1]} logits "
            f"(valid: 0..{logits.shape[-1] - 1})"
        )
    return logits[:, target] if logits.dim() == 2 else logits[:, position, target]


# -- faithfulness ------------------------------------------------------------------------------------

#: The removal orders of :func:`faithfulness`.
ORDERS = ("most_relevant_first", "least_relevant_first", "random")


@dataclasses.dataclass(frozen=True)
class Faithfulness:
    """What :func:`faithfulness` returns.

    - ``fractions``: (steps + 1,) the share of the removable tokens removed at each step, 0 to 1;
    - ``curves``: for each order (``"most_relevant_first"``, ``"least_relevant_first"``,
      ``"random"``: the mean over random orders), (batch, steps + 1) the target's value;
    - ``auc``: for each order, (batch,) the area under its curve against ``fractions``
      (trapezoid rule, 0 % included);
    - ``difference``: (batch,) least-relevant-first minus most-relevant-first AUC: positive
      where removing what the relevance ranks first hurts the target more;
    - ``kept``: the token indices never removed (the query token, the first token: BOS or
      [CLS], the prefix tokens of an image); ``baseline``: what replaced removed tokens.
    """

    fractions: np.ndarray
    curves: dict
    auc: dict
    difference: np.ndarray
    kept: tuple[int, ...]
    baseline: str
    method: str | None = None

    def plot(self, item: int | None = None, *, ax=None, title: str | None = None):
        """The curves as a matplotlib Figure (``visualizer.plots.plot_faithfulness``)."""
        from visualizer.plots import plot_faithfulness

        return plot_faithfulness(self, item=item, ax=ax, title=title)


def faithfulness(
    model,
    inputs,
    relevance,
    target,
    *,
    position: int | None = None,
    steps: int = 10,
    baseline=None,
    random_orders: int = 3,
    seed: int = 0,
) -> Faithfulness:
    """Remove input tokens in order of ``relevance``, most- and least-relevant-first, in ``steps``
    steps, and record ``target`` (as :func:`explain` takes it) after each step.

    A removed token is replaced, not dropped, so positions stay where they were:

    - text (token ids): by ``baseline`` (a token id), else the model's pad token, else its
      mask token, else BOS, else a zero embedding (through ``inputs_embeds``);
    - images (with the patch grid the capture declared): the patch's pixels by the mean patch
      of that image, or by ``baseline`` (a tensor broadcastable to one patch);
    - (batch, tokens, features) inputs: by zeros, or ``baseline`` (features,).

    The query token (``position``, default the relevance's) and the tokens the model needs (the
    first token of a text, BOS or [CLS]; an image's prefix tokens) are never removed. A random
    order, the mean of ``random_orders`` permutations from ``seed``, is the reference a useful
    relevance beats.
    """
    scores, method = _relevance_scores(relevance)
    if not _is_int(steps) or steps < 1:
        raise ValueError(f"faithfulness(steps=...) must be an int of at least 1, not {steps!r}")
    if not _is_int(random_orders) or random_orders < 1:
        raise ValueError(
            f"faithfulness(random_orders=...) must be an int of at least 1, not {random_orders!r}"
        )
    if position is None:
        if not isinstance(relevance, Relevance):
            raise ValueError("faithfulness() needs position= when relevance is plain scores")
        position = relevance.position
    if not _is_int(position):
        raise TypeError(f"faithfulness(position=...) must be an int, not {type(position).__name__}")
    if not (callable(target) or _is_int(target)):
        raise TypeError(
            "faithfulness(target=...) takes an int (a logit index) or a callable, as explain() does"
        )
    layout = relevance.layout if isinstance(relevance, Relevance) else None
    remover = _Remover(model, inputs, scores.shape, layout, baseline)
    batch, tokens = scores.shape
    position = _position(position, tokens)
    kept = sorted({position, *remover.needed})
    removable = torch.ones(tokens, dtype=torch.bool)
    removable[kept] = False
    count = int(removable.sum())
    if count == 0:
        raise ValueError("no token can be removed: the sequence holds only the query and the tokens kept")
    ranked = scores.masked_fill(~removable, float("nan"))
    most = torch.argsort(ranked.nan_to_num(float("-inf")), dim=1, descending=True)[:, :count]
    least = torch.argsort(ranked.nan_to_num(float("inf")), dim=1)[:, :count]
    generator = torch.Generator().manual_seed(seed)
    candidates = torch.nonzero(removable).flatten()
    randoms = [
        candidates[torch.randperm(count, generator=generator)].expand(batch, count)
        for _ in range(random_orders)
    ]
    fractions = np.linspace(0.0, 1.0, steps + 1)
    removed = [int(round(f * count)) for f in fractions]

    def curve(order):
        values = []
        for number in removed:
            with torch.no_grad():
                output = run(model, remover.inputs(order[:, :number]))
                values.append(_values(output, target, position).float().cpu())
        return torch.stack(values, dim=1).numpy().astype(np.float64)

    curves = {"most_relevant_first": curve(most), "least_relevant_first": curve(least)}
    curves["random"] = np.mean([curve(order) for order in randoms], axis=0)
    auc = {name: _trapezoid(values, fractions) for name, values in curves.items()}
    return Faithfulness(
        fractions=fractions,
        curves=curves,
        auc=auc,
        difference=auc["least_relevant_first"] - auc["most_relevant_first"],
        kept=tuple(kept),
        baseline=remover.description,
        method=method,
    )


def _trapezoid(values: np.ndarray, fractions: np.ndarray) -> np.ndarray:
    widths = np.diff(fractions)
    return ((values[:, 1:] + values[:, :-1]) * 0.5 * widths).sum(axis=1)


def _relevance_scores(relevance) -> tuple[torch.Tensor, str | None]:
    if isinstance(relevance, Relevance):
        return relevance.scores.float(), relevance.method
    scores = torch.as_tensor(np.asarray(relevance), dtype=torch.float32)
    if scores.dim() != 2 or not scores.numel():
        raise ValueError(
            f"faithfulness(relevance=...) takes explain()'s result or (batch, tokens) scores, got shape "
            f"{tuple(scores.shape)}"
        )
    if not torch.isfinite(scores).all():
        raise ValueError("faithfulness(relevance=...) holds NaN or infinite scores")
    return scores, None


class _Remover:
    """Builds the model's inputs with some tokens replaced (see :func:`faithfulness`)."""

    def __init__(self, model, inputs, shape, layout, baseline) -> None:
        self.model, self.original = model, inputs
        batch, tokens = shape
        self.main, self.extras, self.rebuild = _main_input(inputs)
        self.needed: list[int] = []
        if self.main.shape[0] != batch:
            raise ValueError(f"the relevance has {batch} items, the inputs {self.main.shape[0]}")
        if not self.main.is_floating_point():  # token ids
            if self.main.dim() != 2 or self.main.shape[1] != tokens:
                raise ValueError(
                    f"the relevance covers {tokens} tokens, the token ids {tuple(self.main.shape)}: "
                    "explain and remove on the same inputs"
                )
            self.kind = "ids"
            self.needed = [0] if getattr(model, "config", None) is not None else []
            token = baseline if baseline is not None else _baseline_token(model)
            if token is not None and not _is_int(token):
                raise TypeError(
                    f"faithfulness(baseline=...) for text is a token id, not {type(token).__name__}"
                )
            self.token = token
            if token is None:
                embeddings = getattr(model, "get_input_embeddings", lambda: None)()
                if embeddings is None or not isinstance(inputs, Mapping):
                    raise ValueError(
                        f"{type(model).__name__} has no pad, mask or BOS token, and no inputs_embeds path: "
                        "give "
                        "faithfulness(baseline=token id)"
                    )
                self.embeddings = embeddings
                self.description = "a zero embedding"
            else:
                self.description = f"token id {token}"
        elif self.main.dim() == 4:  # an image
            grid = getattr(layout, "grid", None)
            if grid is None:
                raise ValueError(
                    "the relevance declares no patch grid, so its scores cannot be put on the image"
                )
            prefix = layout.prefix
            if tokens != prefix + grid[0] * grid[1]:
                raise ValueError(
                    f"the relevance has {tokens} tokens, the layout {prefix} + {grid[0]} x {grid[1]}"
                )
            self.kind, self.grid, self.prefix = "image", grid, prefix
            self.needed = list(range(prefix))
            _, channels, height, width = self.main.shape
            self.patch = (height // grid[0], width // grid[1])
            patches = self._patches(self.main)  # (batch, patches, C, ph, pw)
            if baseline is None:
                self.fill = patches.mean(1, keepdim=True).expand_as(patches)
                self.description = "the image's mean patch"
            else:
                fill = torch.as_tensor(baseline, dtype=self.main.dtype, device=self.main.device)
                self.fill = fill.expand_as(patches)
                self.description = "the given patch"
        elif self.main.dim() == 3 and self.main.shape[1] == tokens:
            self.kind = "sequence"
            fill = torch.zeros(()) if baseline is None else torch.as_tensor(baseline, dtype=self.main.dtype)
            self.fill = fill.to(self.main.device).expand_as(self.main)
            self.description = "zeros" if baseline is None else "the given vector"
        else:
            raise ValueError(
                "faithfulness() removes tokens of token ids, images with a patch grid, or (batch, tokens, "
                "features) "
                f"inputs; got a {tuple(self.main.shape)} input for {tokens} tokens"
            )

    def _patches(self, pixels):
        batch, channels = pixels.shape[:2]
        (rows, cols), (ph, pw) = self.grid, self.patch
        cropped = pixels[:, :, : rows * ph, : cols * pw]
        return (
            cropped.reshape(batch, channels, rows, ph, cols, pw)
            .permute(0, 2, 4, 1, 3, 5)
            .reshape(batch, rows * cols, channels, ph, pw)
        )

    def inputs(self, order):
        """The inputs with the tokens ``order`` (batch, removed) replaced."""
        batch = self.main.shape[0]
        items = torch.arange(batch).unsqueeze(1).expand_as(order)
        if self.kind == "ids":
            if self.token is not None:
                ids = self.main.clone()
                ids[items, order] = self.token
                return self.rebuild(ids, self.extras)
            embeds = self.embeddings(self.main).detach().clone()
            embeds[items, order] = 0
            rest = {k: v for k, v in self.original.items() if k != "input_ids"}
            return {**rest, "inputs_embeds": embeds}
        if self.kind == "sequence":
            values = self.main.clone()
            values[items, order] = self.fill[items, order]
            return self.rebuild(values, self.extras)
        patches = self._patches(self.main).clone()
        index = order - self.prefix
        patches[items, index] = self.fill[items, index]
        (rows, cols), (ph, pw) = self.grid, self.patch
        channels = patches.shape[2]
        pixels = self.main.clone()
        pixels[:, :, : rows * ph, : cols * pw] = (
            patches.reshape(batch, rows, cols, channels, ph, pw)
            .permute(0, 3, 1, 4, 2, 5)
            .reshape(batch, channels, rows * ph, cols * pw)
        )
        return self.rebuild(pixels, self.extras)
