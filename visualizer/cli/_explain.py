"""``--explain METHOD``: which input tokens drove each input's output, and whether that holds up.

    python -m visualizer vit cat.jpg                             # attention_grad, the default
    python -m visualizer bert "The cat sat." --explain input_x_gradient
    python -m visualizer lm --explain none                       # no explanation

>>> method = check_method(args.explain)          # before a model loads: None for "none"
>>> target = top_class(logits)                    # or embedding_target(...), next_token(...)
>>> entry = explain_input(outputs, folder, model, pixels, target, method, label=label, image=shown)

For each input, :func:`visualizer.explain` with the method chosen (one of
``visualizer.relevance.METHODS``), then :func:`visualizer.faithfulness` of that relevance
(:data:`FAITHFULNESS_STEPS` steps, :data:`RANDOM_ORDERS` random orders: cheap), written as
``relevance.png`` (:func:`visualizer.plots.plot_relevance`), ``faithfulness.png``
(:func:`visualizer.plots.plot_faithfulness`) and a ``"relevance"`` entry of ``stats.json``:
the method, the target and how it was chosen, the position explained, every token's score
and the faithfulness AUCs. What is explained:

- ``vit``: the top class's logit for a model with a classifier; for one without (the
  DINOv2 default has ``num_classes=0``), the embedding along the unperturbed image's;
- ``bert``: the top class's logit where the output has logits; else (the MiniLM default, a
  sentence-embedding model) the mean-pooled embedding along the unperturbed text's;
- ``lm``: the logit of the token the model predicts after the prompt, at its last position.

"Along the unperturbed embedding" is the projection ``<e(x), e0 / |e0|>``, not the cosine
similarity of ``e(x)`` and ``e0``: at the unperturbed input that cosine is at its maximum, 1,
where its gradient is 0, so every gradient method (attention_grad, input x gradient,
AttnLRP) would draw rounding noise (scores of 1e-11). The projection has the embedding's
own gradient and falls, as the cosine does, when the tokens it depends on are removed.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from visualizer.cli._common import UsageError
from visualizer.cli._outputs import Outputs

__all__ = [
    "DEFAULT_METHOD",
    "FAITHFULNESS_STEPS",
    "NONE",
    "RANDOM_ORDERS",
    "Target",
    "check_method",
    "embedding_target",
    "explain_input",
    "methods_text",
    "next_token",
    "top_class",
]

#: What ``--explain`` defaults to.
DEFAULT_METHOD = "attention_grad"
#: ``--explain none``: no explanation, no relevance.png or faithfulness.png.
NONE = "none"
#: Removal steps and random orders of the faithfulness check: (steps + 1) x (2 + orders) forwards.
FAITHFULNESS_STEPS = 10
RANDOM_ORDERS = 2


class Target(NamedTuple):
    """What is explained: ``value`` (an int logit, or a callable: output -> (batch,)), ``caption``
    (what the figure's title calls it) and ``rule`` (how it was chosen, for stats.json)."""

    value: Any
    caption: str
    rule: str


class _Along:
    """The pooled embedding's projection on the unit vector of the unperturbed one: output -> (batch,)."""

    def __init__(self, reference, pool, name: str) -> None:
        import torch

        self.unit = torch.nn.functional.normalize(reference.detach().float(), dim=-1)
        self.pool = pool
        self.__name__ = name  # what Relevance.target and the titles show

    def __call__(self, output):
        embedding = self.pool(output).float()
        return (embedding * self.unit.to(embedding.device)).sum(-1)


def methods_text() -> str:
    """The methods ``--explain`` takes, for ``--help``: read from visualizer.relevance (which needs torch)."""
    try:
        from visualizer.relevance import METHODS
    except ImportError:  # a core-only install: the command itself will name the missing extra
        return "a method of visualizer.relevance.METHODS (needs the models extra)"
    return ", ".join(METHODS)


def check_method(name: str) -> str | None:
    """``--explain``'s value checked: a method of ``visualizer.relevance.METHODS``, or None for "none".

    A UsageError for an unknown name, and for integrated_gradients when captum cannot be
    imported, so that neither costs a model load.
    """
    if name == NONE:
        return None
    from visualizer.relevance import METHODS

    if name not in METHODS:
        close = difflib.get_close_matches(name.lower(), [*METHODS, NONE], n=1, cutoff=0.75)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise UsageError(
            f"--explain {name!r} is not a relevance method{hint}; use one of {', '.join(METHODS)}, "
            f"or {NONE} for no explanation"
        )
    if name == "integrated_gradients":
        try:
            importlib.import_module("captum.attr")  # what explain() imports for it
        except ImportError as exc:
            raise UsageError(
                f"--explain integrated_gradients needs captum, which cannot be imported ({exc}): "
                'pip install -c constraints.txt "transformer-visualizer[relevance]", or choose another method'
            ) from None
    return name


def top_class(logits) -> Target:
    """The logit of item 0's top class, from (batch, classes) logits."""
    best = int(logits[0].argmax())
    rule = f"the logit of the top predicted class ({best} of {logits.shape[-1]})"
    return Target(best, f"the logit of class {best}", rule)


def next_token(logits, name_of: Callable[[int], str]) -> Target:
    """The logit of the token predicted after the prompt, from (batch, tokens, vocabulary) logits;
    ``name_of`` gives a token id's text."""
    best = int(logits[0, -1].argmax())
    return Target(
        best,
        f"the logit of {name_of(best)!r} (token {best}), predicted next",
        f"the logit of the token the model predicts after the prompt ({name_of(best)!r}, id {best}), "
        "at the prompt's last position",
    )


def embedding_target(reference, pool, what: str) -> Target:
    """The embedding (``pool(output)``, (batch, features)) along ``reference``, the unperturbed one's."""
    name = f"the embedding along the unperturbed {what}'s"
    return Target(
        _Along(reference, pool, name),
        name,
        f"{name}: <e(x), e0 / |e0|>, e0 the embedding of the {what} as given (the model has no classifier; "
        "not the cosine similarity, whose gradient is 0 at e0)",
    )


def explain_input(
    outputs: Outputs,
    folder: Path,
    model,
    inputs,
    target: Target,
    method: str,
    *,
    label: str,
    image=None,
    tokens: list[str] | None = None,
) -> dict[str, Any]:
    """Explain ``target`` with ``method``, check it, write relevance.png and faithfulness.png into
    ``folder``; returns the ``"relevance"`` entry of stats.json."""
    from visualizer import explain, faithfulness
    from visualizer.plots import plot_faithfulness, plot_relevance

    try:
        relevance = explain(model, inputs, target.value, method=method)
        check = faithfulness(
            model, inputs, relevance, target.value, steps=FAITHFULNESS_STEPS, random_orders=RANDOM_ORDERS
        )
    except (ValueError, IndexError) as exc:  # explain's own refusals: a model or input it cannot explain
        raise UsageError(f"--explain {method}: {exc}; --explain {NONE} skips the explanation") from None
    shown = tokens[: relevance.scores.shape[1]] if tokens is not None else None
    title = (
        f"{label}\n{relevance.method} relevance of {target.caption}\n"
        f"at position {relevance.position} ({relevance.position_rule})"
    )
    outputs.figure(folder, "relevance.png", plot_relevance(relevance, image, tokens=shown, title=title))
    title = f"{label}\nfaithfulness of {relevance.method}; removed tokens become {check.baseline}"
    outputs.figure(folder, "faithfulness.png", plot_faithfulness(check, title=title))
    return {
        "method": relevance.method,
        "target": relevance.target,
        "target_rule": target.rule,
        "target_value": _number(relevance.outputs[0]),
        "position": relevance.position,
        "position_rule": relevance.position_rule,
        **({"tokens": shown} if shown is not None else {}),
        "scores": [_number(value) for value in relevance.scores[0].tolist()],
        "faithfulness": {
            "steps": FAITHFULNESS_STEPS,
            "random_orders": RANDOM_ORDERS,
            "removed_tokens_become": check.baseline,
            "kept": list(check.kept),
            "auc": {order: _number(values[0]) for order, values in check.auc.items()},
            "difference": _number(check.difference[0]),
            "rule": "the target as the removable tokens are replaced, most or least relevant first or in "
            "random order; AUC over the share removed (0 to 1); difference: least- minus most-relevant-first "
            "AUC, positive when the relevance ranks first what the target needs",
        },
    }


def _number(value) -> float:
    """A score for JSON: a float of 6 significant digits."""
    return float(f"{float(value):.6g}")
