"""Relevance in the views: the tokens or patches shaded by what drove an output.

>>> relevance = explain(vit, pixels, target=207)               # a Relevance, scores (batch, tokens)
>>> image_view(maps, picture, relevance=relevance)             # a third panel: the patches by relevance
>>> text_view(maps, tokens, relevance=explain(lm, ids, target=42))   # "Show: relevance | attention"
>>> text_view(maps, tokens, relevance=scores)                  # or plain scores, (tokens,) or (batch, tokens)

``relevance`` is what :func:`visualizer.explain` returns, read by its attributes (``scores``,
``method``, ``target``, ``position``, ``position_rule``, ``outputs``, ``layout``), so this
module never imports torch; or plain per-token scores, numpy, torch or nested lists, (tokens,)
or (batch, tokens), the view's ``batch`` picking the item. One score per token, prefix tokens
(CLS, registers) included, as ``Relevance.scores`` has them.

Colours: red for positive scores, blue for negative ones (matplotlib's ``RdBu_r``), white at
0, with an opacity that grows with the size of the score. Scores with a negative value
(``input_x_gradient``, ``integrated_gradients``, ``attnlrp``) get a diverging scale centred at
0, from -m to +m; scores that are all >= 0 a sequential one, from 0 to m. ``m`` is the largest
size among the tokens shaded (the patches, in the image view), the explained position left out:
its own score holds the residual stream's, or the identity's, direct path and would
wash every other token out (it is drawn at the end of the scale and its score written out).

Payload: the item's scores as little-endian float32, base64, in a ``<script
class="tvz-relevance">`` block of the page; 4 bytes a token, exact (:func:`decode_scores`).
"""

from __future__ import annotations

import base64
import numbers
from collections.abc import Mapping

import numpy as np

from visualizer._arrays import as_array
from visualizer._validate import index
from visualizer.plots._colors import colormap_table

__all__ = [
    "ENCODING",
    "RELEVANCE_CMAP",
    "check_layout",
    "decode_scores",
    "relevance_layout",
    "relevance_panel",
]

ENCODING = "float32-le"
#: The relevance colours of every view: red positive, white 0, blue negative.
RELEVANCE_CMAP = "RdBu_r"

_ACCEPTS = (
    "what visualizer.explain() returns (a Relevance) or per-token scores, (tokens,) or (batch, tokens), "
    "as a numpy array or a torch tensor"
)


def relevance_panel(
    relevance,
    *,
    count: int,
    batch: int,
    what: str,
    shaded: slice | None = None,
    names: list[str] | None = None,
    counts: str = "",
    shorter: int | None = None,
) -> tuple[dict, str]:
    """``(config["relevance"], payload)`` of a view of ``count`` tokens, or the error that says why not.

    - ``shaded``: the tokens the colours are shown on (the patches of an image view; None: all);
    - ``names``: the tokens' texts, to name the explained position on the page;
    - ``counts``: what the view's ``count`` tokens are, for the length error ("1 + 4x4 patches");
    - ``shorter``: another length accepted (a generation's last token, which has no score).
    """
    scores, info = _read(relevance, what)
    if scores.ndim not in (1, 2):
        raise ValueError(
            f"{what}: relevance scores must be (tokens,) or (batch, tokens); got shape {tuple(scores.shape)}"
        )
    if scores.ndim == 1:  # the scores of the item shown, whichever it is
        scores, item = scores[None], 0
    else:
        item = index(batch, scores.shape[0], f"{what}: batch (of the relevance scores)", "item")
    row = scores[item].astype(np.float32)
    if row.size not in (count, shorter):
        also = f", or {shorter} (the last token has none)" if shorter is not None else ""
        raise ValueError(
            f"{what}: relevance has {row.size} scores but the view has {count} tokens"
            + (f" ({counts})" if counts else "")
            + f"; pass one score per token, prefix tokens included{also}"
        )
    bad = np.flatnonzero(~np.isfinite(row))
    if bad.size:
        raise ValueError(
            f"{what}: relevance holds {bad.size} scores that are NaN or infinite (the first at token "
            f"{bad[0]}: {row[bad[0]]}); the view shades finite scores only (check the explanation, e.g. "
            "a float16 model's gradients)"
        )
    position = info["position"]
    if position is not None and not 0 <= position < row.size:
        raise ValueError(f"{what}: relevance.position {position} is not one of the {row.size} tokens")
    window = np.zeros(row.size, dtype=bool)
    window[shaded if shaded is not None else slice(None)] = True
    if position is not None and window.sum() > 1:
        window[position] = False
    outputs = info["outputs"]
    output = float(outputs[item]) if outputs is not None and outputs.size == scores.shape[0] else None
    signed = bool((row < 0).any())
    limit = float(np.abs(row[window]).max()) if window.any() else 0.0
    meta = {
        "encoding": ENCODING,
        "count": int(row.size),
        "method": info["method"],
        "target": info["target"],
        "position": position,
        "output": output,
        "signed": signed,
        "limit": limit,
        "label": _label(info, names, output),
        "colormap": colormap_table(RELEVANCE_CMAP),
    }
    return meta, base64.b64encode(row.astype("<f4").tobytes()).decode("ascii")


def decode_scores(payload: str, meta: dict) -> np.ndarray:
    """The (tokens,) float32 scores of :func:`relevance_panel`'s payload, as the browser reads them."""
    if meta.get("encoding") != ENCODING:
        raise ValueError(
            f"unknown relevance encoding {meta.get('encoding')!r}; this version reads {ENCODING!r}"
        )
    raw = base64.b64decode(payload)
    if len(raw) != 4 * meta["count"]:
        raise ValueError(
            f"relevance payload holds {len(raw)} bytes, but {meta['count']} scores need {4 * meta['count']}"
        )
    return np.frombuffer(raw, dtype="<f4").astype(np.float32)


def relevance_layout(relevance):
    """The layout a Relevance declares (``relevance.layout``), or None (plain scores, or none declared)."""
    if relevance is None or not _is_relevance(relevance):
        return None
    return getattr(relevance, "layout", None)


def check_layout(relevance, rows: int, cols: int, prefix: int, what: str) -> None:
    """Refuse a Relevance whose layout is not the image view's: ``prefix`` tokens and a rows x cols grid.

    Plain scores declare nothing and pass; only their length is checked (:func:`relevance_panel`).
    """
    if relevance is None or not _is_relevance(relevance):
        return
    layout = relevance_layout(relevance)
    grid = getattr(layout, "grid", None)
    if grid is None:
        raise ValueError(
            f"{what}: the relevance declares no patch grid (its layout: {layout!r}), so its scores are not "
            f"over the {rows} x {cols} patches shown; explain() the vision model whose attention this is, "
            "or pass relevance.scores to use the scores as they are"
        )
    declared = (tuple(int(n) for n in grid), int(getattr(layout, "prefix", 0)))
    if declared != ((rows, cols), prefix):
        (got_rows, got_cols), got_prefix = declared
        raise ValueError(
            f"{what}: the relevance is over {got_prefix} prefix tokens and a {got_rows} x {got_cols} patch "
            f"grid, but the view shows {prefix} prefix tokens and a {rows} x {cols} grid; explain() the same "
            "model on the same image, or pass grid= and prefix_tokens= to match"
        )


def _is_relevance(value) -> bool:
    return all(hasattr(value, name) for name in ("scores", "method", "position"))


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _read(relevance, what: str) -> tuple[np.ndarray, dict]:
    """The scores as numpy, and what the page says about them (None for what plain scores cannot say)."""
    info: dict = {"method": None, "target": None, "position": None, "rule": None, "outputs": None}
    if _is_relevance(relevance):
        method, target, position = relevance.method, getattr(relevance, "target", None), relevance.position
        if not isinstance(method, str):
            raise TypeError(f"{what}: relevance.method must be a str; got {type(method).__name__}")
        if position is not None and not _is_int(position):
            raise TypeError(
                f"{what}: relevance.position must be an int or None; got {type(position).__name__}"
            )
        rule = getattr(relevance, "position_rule", None)
        info.update(
            method=method,
            target=None if target is None else str(target) if _is_int(target) else f"{target}()",
            position=None if position is None else int(position),
            rule=rule if isinstance(rule, str) else None,
        )
        scores = _array(relevance.scores, f"{what}: relevance.scores")
        outputs = getattr(relevance, "outputs", None)
        if outputs is not None:
            info["outputs"] = _array(outputs, f"{what}: relevance.outputs").reshape(-1)
        return scores, info
    if (
        relevance is None
        or isinstance(relevance, (str, bytes, Mapping, bool, numbers.Number))
        or callable(relevance)
    ):
        raise TypeError(f"{what}: relevance must be {_ACCEPTS}; got {type(relevance).__name__}")
    return _array(relevance, f"{what}: relevance"), info


def _array(value, what: str) -> np.ndarray:
    try:
        return as_array(value, what)
    except TypeError as error:
        raise TypeError(f"{error}; relevance takes {_ACCEPTS}") from None


def _label(info: dict, names: list[str] | None, output: float | None) -> str:
    """One line naming what the scores explain: the method, the target, the position, the output."""
    if info["method"] is None:
        return "Relevance: the scores given (no method, target or position known)"
    parts = [f"Relevance: {info['method']}"]
    if info["target"] is not None:
        parts.append(f"of target {info['target']}")
    position = info["position"]
    if position is not None:
        token = f" \u201c{names[position]}\u201d" if names is not None and position < len(names) else ""
        rule = f" ({info['rule']})" if info["rule"] else ""
        parts.append(f"at position {position}{token}{rule}")
    text = " ".join(parts)
    if output is not None and np.isfinite(output):
        text += f"; the target's value: {output:.4g}"
    return text
