"""Relevance scored against known evidence: segmentation scores, the pointing game, evidence ranks.

>>> import numpy as np
>>> from visualizer.demos._truth import evidence_rank, pointing_game, segmentation_scores
>>> relevance = np.array([[0.1, 0.9, 0.8, 0.0], [0.7, 0.2, 0.1, 0.3]])   # (items, elements)
>>> evidence = np.array([[False, True, True, False], [False, False, True, False]])
>>> pointing_game(relevance, evidence)          # item 0's top element is evidence, item 1's is not
0.5
>>> evidence_rank(relevance, evidence)          # 0 = the top element; item 1's evidence comes last
array([0, 3])
>>> scores = segmentation_scores(relevance, evidence)
>>> sorted(scores)
['map', 'miou', 'pixel_accuracy']

Every function takes arrays of shape ``(N, ...)``: N items, each with any number of trailing
dimensions, ``(N, H, W)`` for pixels or ``(N, tokens)`` for text. ``relevance`` is real and
finite; ``mask`` is boolean, True on the evidence, and every item has some. ``ignore``
(optional, boolean, same shape) marks elements left out of every measure, such as padding,
CLS and SEP tokens: they are neither evidence nor background, never the argmax, and take
no part in the normalisation, the threshold or the counts.

:func:`segmentation_scores` follows how Chefer, Gur & Wolf (CVPR 2021, "Transformer
Interpretability Beyond Attention Visualization") score ImageNet-segmentation in their
``baselines/ViT/imagenet_seg_eval.py`` and ``utils/metrices.py``:

- each item's relevance is min-max normalised to [0, 1]; an element is predicted foreground
  where it is strictly above the item's mean (after normalisation);
- **pixel accuracy**: the correctly predicted elements over all elements, summed over the
  data set before dividing;
- **mIoU**: per class (background, foreground), intersection over union, each summed over
  the data set; then the mean of the two;
- **mAP**: per item, the average precision of the two-channel score ``(1 - r, r)`` against
  the one-hot labels ``(background, foreground)``, pooled into one ranking of 2 x elements
  (their ``get_ap_scores``: ``average_precision_score`` on the flattened one-hot); then the
  mean over items. It is therefore not the foreground AP alone: the background channel
  counts as much as the foreground one, as in the numbers the paper reports.

Average precision is sklearn's: ``sum_n (R_n - R_{n-1}) P_n`` over the distinct score
thresholds, so tied scores enter together and their order does not matter.

An item whose relevance is constant carries no ranking. In Chefer's code its normalisation
is 0 / 0, which becomes 0 in both channels: it predicts background everywhere and all its
scores tie. This module does the same.

:func:`pointing_game` and :func:`evidence_rank` break ties as ``numpy.argmax`` does, by the
first element in C order, so ``pointing_game(r, m) == (evidence_rank(r, m) == 0).mean()``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["average_precision", "evidence_rank", "pointing_game", "segmentation_scores"]


def segmentation_scores(relevance, mask, ignore=None) -> dict[str, float]:
    """``{"pixel_accuracy", "miou", "map"}`` of relevance (N, ...) against the evidence mask (N, ...).

    >>> segmentation_scores(np.array([[0.0, 1.0, 0.2, 0.1]]), np.array([[False, True, False, False]]))
    {'pixel_accuracy': 1.0, 'miou': 1.0, 'map': 1.0}

    See the module docstring for how each is computed (Chefer et al.'s ImageNet-segmentation
    protocol). All three lie in [0, 1]; higher is better.
    """
    scores, evidence, kept = _checked(relevance, mask, ignore, "segmentation_scores")
    correct = labelled = 0
    intersection = np.zeros(2, dtype=np.int64)
    union = np.zeros(2, dtype=np.int64)
    precisions = []
    for item_scores, item_evidence, item_kept in zip(scores, evidence, kept):
        values = item_scores[item_kept]
        truth = item_evidence[item_kept]
        normalised = _min_max(values)
        foreground = normalised > normalised.mean()
        correct += int(np.count_nonzero(foreground == truth))
        labelled += truth.size
        for label, predicted, actual in ((0, ~foreground, ~truth), (1, foreground, truth)):
            intersection[label] += np.count_nonzero(predicted & actual)
            union[label] += np.count_nonzero(predicted | actual)
        two_channel = np.concatenate([1.0 - normalised, normalised])
        one_hot = np.concatenate([~truth, truth])
        precisions.append(average_precision(two_channel, one_hot))
    # Chefer's code divides by (eps + union): a class absent from both prediction and truth
    # (no background anywhere) scores 0 there, and so it does here; other classes divide exactly.
    iou = np.divide(intersection, union, out=np.zeros(2), where=union > 0)
    return {
        "pixel_accuracy": correct / labelled,
        "miou": float(iou.mean()),
        "map": float(np.mean(precisions)),
    }


def pointing_game(relevance, mask, ignore=None) -> float:
    """The share of items whose most relevant element (the first maximum) is evidence.

    >>> relevance = np.array([[0.2, 0.5, 0.5], [0.9, 0.1, 0.0]])
    >>> pointing_game(relevance, np.array([[False, True, True], [False, True, False]]))
    0.5

    Ignored elements are never the maximum. Zhang et al. (2016) count a hit within a
    tolerance of the mask; here the mask is the tolerance: dilate it first if you want one.
    """
    return float(np.mean(evidence_rank(relevance, mask, ignore) == 0))


def evidence_rank(relevance, mask, ignore=None) -> np.ndarray:
    """(N,) int64: per item, the rank of its best-ranked evidence element (0 = the top one).

    >>> evidence_rank(np.array([[0.3, 0.1, 0.9, 0.5]]), np.array([[False, True, False, True]]))
    array([1])

    Elements are ranked by decreasing relevance, ties by position (as ``numpy.argmax``), and
    ignored elements are left out of the ranking. A rank of k means k non-evidence elements
    come before the first evidence element.
    """
    scores, evidence, kept = _checked(relevance, mask, ignore, "evidence_rank")
    ranks = np.empty(len(scores), dtype=np.int64)
    for index, (item_scores, item_evidence, item_kept) in enumerate(zip(scores, evidence, kept)):
        values = item_scores[item_kept]
        truth = item_evidence[item_kept]
        order = np.argsort(-values, kind="stable")
        ranks[index] = int(np.argmax(truth[order]))
    return ranks


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """Average precision of 1-d ``scores`` for the boolean ``labels``, ties as sklearn treats them.

    >>> average_precision(np.array([0.9, 0.8, 0.8, 0.1]), np.array([True, False, True, False]))
    0.8333333333333333

    ``sum_n (R_n - R_{n-1}) P_n`` over the distinct thresholds, from the highest down.
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels, dtype=bool).ravel()
    if scores.shape != labels.shape:
        raise ValueError(f"scores {scores.shape} and labels {labels.shape} must have the same length")
    positives = int(np.count_nonzero(labels))
    if positives == 0:
        raise ValueError("average precision needs at least one positive label")
    order = np.argsort(-scores, kind="stable")
    ordered = scores[order]
    # The last index of each run of equal scores: one threshold per distinct score.
    ends = np.r_[np.flatnonzero(np.diff(ordered) != 0), ordered.size - 1]
    true_positives = np.cumsum(labels[order])[ends]
    precision = true_positives / (ends + 1)
    recall = true_positives / positives
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def _min_max(values: np.ndarray) -> np.ndarray:
    low, high = values.min(), values.max()
    if high == low:
        # Chefer's 0 / 0 = NaN, set to 0: background everywhere, every score tied.
        return np.zeros_like(values)
    return (values - low) / (high - low)


def _checked(relevance, mask, ignore, caller: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """relevance as float64, mask and kept (not ignored) as bool, all (N, elements); checked."""
    scores = _as_array(relevance, "relevance", caller)
    if scores.dtype == bool or not (
        np.issubdtype(scores.dtype, np.integer) or np.issubdtype(scores.dtype, np.floating)
    ):
        raise TypeError(f"{caller}: relevance must hold real numbers, got dtype {scores.dtype}")
    if scores.ndim < 2:
        raise ValueError(
            f"{caller}: relevance must have shape (N, ...), one row of scores per item, got shape "
            f"{scores.shape}; for one item, pass relevance[None] and mask[None]"
        )
    if scores.shape[0] == 0:
        raise ValueError(f"{caller}: no items (N == 0): there is nothing to score")
    if scores[0].size == 0:
        raise ValueError(f"{caller}: the items have no elements (shape {scores.shape})")
    evidence = _boolean(mask, "mask", scores.shape, caller)
    kept = (
        np.ones(scores.shape, dtype=bool)
        if ignore is None
        else ~_boolean(ignore, "ignore", scores.shape, caller)
    )
    scores = scores.astype(np.float64)
    bad = ~np.isfinite(scores) & kept
    if bad.any():
        item = int(np.argwhere(bad)[0][0])
        kind = "NaN" if np.isnan(scores[bad]).any() else "infinite values"
        raise ValueError(
            f"{caller}: relevance holds {kind} ({int(bad.sum())} elements, the first in item {item}); "
            f"a NaN usually means the explanation's normalisation divided by zero"
        )
    count = scores.shape[0]
    scores, evidence, kept = scores.reshape(count, -1), evidence.reshape(count, -1), kept.reshape(count, -1)
    if not kept.any(axis=1).all():
        item = int(np.flatnonzero(~kept.any(axis=1))[0])
        raise ValueError(f"{caller}: item {item} has every element ignored: there is nothing to score")
    empty = ~(evidence & kept).any(axis=1)
    if empty.any():
        items = np.flatnonzero(empty)
        where = "mask" if ignore is None else "mask outside ignore"
        raise ValueError(
            f"{caller}: {items.size} item(s) have no evidence in {where} "
            f"(the first: item {int(items[0])}); every item needs at least one True element to score against"
        )
    return scores, evidence & kept, kept


def _as_array(value, name: str, caller: str) -> np.ndarray:
    if hasattr(value, "detach"):
        # A torch tensor: take it as numpy without importing torch here.
        value = value.detach().cpu().numpy()
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as error:
        raise TypeError(f"{caller}: {name} must be an array, got {type(value).__name__}: {error}") from None
    if array.dtype == object:
        raise TypeError(f"{caller}: {name} must be a numeric array, got {type(value).__name__} of objects")
    return array


def _boolean(value, name: str, shape: tuple[int, ...], caller: str) -> np.ndarray:
    array = _as_array(value, name, caller)
    if array.dtype != bool:
        meaning = "the evidence" if name == "mask" else "the elements to leave out"
        raise TypeError(
            f"{caller}: {name} must be a boolean array (True on {meaning}), got dtype {array.dtype}; "
            f"convert with `{name} > 0` or `{name}.astype(bool)` if that is what you mean"
        )
    if array.shape != shape:
        raise ValueError(
            f"{caller}: {name} has shape {array.shape}, but relevance has shape {shape}; they must match"
        )
    return array
