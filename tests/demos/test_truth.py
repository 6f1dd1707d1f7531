"""Scoring relevance against known evidence: hand-checked cases, brute-force references, bad inputs."""

import itertools

import numpy as np
import pytest

from visualizer.demos._truth import average_precision, evidence_rank, pointing_game, segmentation_scores


def brute_average_precision(scores, labels) -> float:
    """sklearn's definition, spelled out: at each distinct threshold t (high to low), precision and
    recall of "score >= t"; AP = sum of (recall step) * precision."""
    total = 0.0
    previous_recall = 0.0
    for threshold in sorted(set(scores.tolist()), reverse=True):
        predicted = scores >= threshold
        true_positives = np.sum(predicted & labels)
        recall = true_positives / labels.sum()
        total += (recall - previous_recall) * true_positives / predicted.sum()
        previous_recall = recall
    return float(total)


def brute_segmentation(relevance, mask, ignore=None) -> dict:
    """Chefer et al.'s protocol, one item and one pixel at a time in plain Python."""
    count = len(relevance)
    ignore = np.zeros_like(mask) if ignore is None else ignore
    correct = labelled = 0
    inter, union = [0, 0], [0, 0]
    precisions = []
    for item in range(count):
        values = [float(v) for v, i in zip(relevance[item].ravel(), ignore[item].ravel()) if not i]
        truth = [bool(m) for m, i in zip(mask[item].ravel(), ignore[item].ravel()) if not i]
        low, high = min(values), max(values)
        normalised = [(v - low) / (high - low) if high > low else 0.0 for v in values]
        mean = sum(normalised) / len(normalised)
        predicted = [v > mean for v in normalised]
        for p, t in zip(predicted, truth):
            correct += p == t
            labelled += 1
            for label in (0, 1):
                inter[label] += (p == label) and (t == label)
                union[label] += (p == label) or (t == label)
        scores = np.array([1 - v for v in normalised] + normalised)
        labels = np.array([not t for t in truth] + truth)
        precisions.append(brute_average_precision(scores, labels))
    ious = [inter[c] / union[c] if union[c] else 0.0 for c in (0, 1)]
    return {"pixel_accuracy": correct / labelled, "miou": sum(ious) / 2, "map": sum(precisions) / count}


# --- average precision ------------------------------------------------------------------------------


def test_average_precision_by_hand():
    # Ranked: + - + -: precision 1 at recall 1/2, 2/3 at recall 1.
    assert average_precision(
        np.array([0.9, 0.7, 0.5, 0.1]), np.array([True, False, True, False])
    ) == pytest.approx((1 + 2 / 3) / 2)
    # Every score tied: one threshold, AP is the share of positives.
    assert average_precision(np.zeros(5), np.array([True, False, False, True, False])) == pytest.approx(0.4)
    # A perfect ranking scores 1, the reversed one less.
    assert average_precision(np.array([3.0, 2.0, 1.0]), np.array([True, True, False])) == 1.0
    assert average_precision(np.array([1.0, 2.0, 3.0]), np.array([True, True, False])) < 1.0


def test_average_precision_ties_count_together_in_any_order():
    # The tied pair (one positive, one negative) enters at once: precision 2/3 at recall 1.
    scores, labels = np.array([0.9, 0.5, 0.5]), np.array([True, True, False])
    expected = 0.5 * 1 + 0.5 * (2 / 3)
    assert average_precision(scores, labels) == pytest.approx(expected)
    assert average_precision(scores[[0, 2, 1]], labels[[0, 2, 1]]) == pytest.approx(expected)


@pytest.mark.parametrize("seed", range(20))
def test_average_precision_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    size = int(rng.integers(2, 40))
    scores = rng.integers(0, 6, size).astype(float)  # few distinct values: many ties
    labels = rng.random(size) < 0.4
    labels[rng.integers(size)] = True
    assert average_precision(scores, labels) == pytest.approx(brute_average_precision(scores, labels))


def test_average_precision_needs_a_positive():
    with pytest.raises(ValueError, match="at least one positive"):
        average_precision(np.array([0.1, 0.2]), np.array([False, False]))


# --- segmentation scores ----------------------------------------------------------------------------


def test_segmentation_perfect_map_scores_one():
    mask = np.zeros((2, 4, 4), dtype=bool)
    mask[0, 1:3, 1:3] = True
    mask[1, 0, :] = True
    scores = segmentation_scores(mask.astype(float) * 5 + 1, mask)
    assert scores == {"pixel_accuracy": 1.0, "miou": 1.0, "map": 1.0}


def test_segmentation_hand_checked_item():
    # Normalised: [0, 1, 0.5, 0.25]; mean 0.4375: predicted foreground = elements 1 and 2.
    relevance = np.array([[0.0, 4.0, 2.0, 1.0]])
    mask = np.array([[False, True, False, True]])
    scores = segmentation_scores(relevance, mask)
    assert scores["pixel_accuracy"] == pytest.approx(2 / 4)  # elements 0 and 1 right
    # background: predicted {0, 3}, truth {0, 2}: 1 / 3; foreground: {1, 2} vs {1, 3}: 1 / 3.
    assert scores["miou"] == pytest.approx(1 / 3)
    # Two channels pooled: scores 1 - r for background labels, r for foreground labels.
    pooled = np.array([1.0, 0.0, 0.5, 0.75, 0.0, 1.0, 0.5, 0.25])
    labels = np.array([True, False, True, False, False, True, False, True])
    assert scores["map"] == pytest.approx(brute_average_precision(pooled, labels))


def test_segmentation_is_invariant_to_scale_and_shift_per_item():
    rng = np.random.default_rng(0)
    relevance = rng.random((3, 5, 5))
    mask = rng.random((3, 5, 5)) < 0.3
    mask[:, 0, 0] = True
    shifted = (
        relevance * np.array([2.0, 0.5, 7.0])[:, None, None] + np.array([-3.0, 1.0, 10.0])[:, None, None]
    )
    assert segmentation_scores(shifted, mask) == pytest.approx(segmentation_scores(relevance, mask))


def test_segmentation_pools_pixels_over_the_data_set_but_averages_ap_per_item():
    # Item 0: 2 elements kept, both right; item 1: 6 elements, 4 right.
    # Pooled: (2 + 4) / 8, not the mean of the items' (1 + 4 / 6) / 2.
    relevance = np.array([[1.0, 0.0, 0, 0, 0, 0], [0.0, 1.0, 1.0, 1.0, 0.0, 0.0]])
    mask = np.array([[True, False, False, False, False, False], [True, True, True, False, False, False]])
    ignore = np.array([[False, False, True, True, True, True], [False] * 6])
    scores = segmentation_scores(relevance, mask, ignore)
    assert scores["pixel_accuracy"] == pytest.approx(6 / 8)
    assert scores == pytest.approx(brute_segmentation(relevance, mask, ignore))
    assert scores["pixel_accuracy"] != pytest.approx((1 + 4 / 6) / 2)


@pytest.mark.parametrize("seed", range(8))
def test_segmentation_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(1, 5)), 3, int(rng.integers(2, 5)))
    relevance = np.round(rng.normal(size=shape), 1)  # ties
    if seed == 3:
        relevance[0] = 0.25  # a constant item: background everywhere, every score tied
    mask = rng.random(shape) < 0.4
    ignore = (rng.random(shape) < 0.2) if seed % 2 else None
    kept = np.ones(shape, bool) if ignore is None else ~ignore
    for item in range(shape[0]):
        mask[item].flat[int(np.flatnonzero(kept[item])[0])] = True
    expected = brute_segmentation(relevance, mask, ignore)
    assert segmentation_scores(relevance, mask, ignore) == pytest.approx(expected)


def test_ignored_elements_change_nothing_but_their_own_absence():
    rng = np.random.default_rng(1)
    relevance, mask = rng.random((4, 10)), rng.random((4, 10)) < 0.3
    mask[:, 0] = True
    ignore = np.zeros((4, 10), dtype=bool)
    ignore[:, -3:] = True
    # Padding with wild values, ignored, scores as if it were cut off.
    padded = relevance.copy()
    padded[:, -3:] = 1e6
    cut = segmentation_scores(relevance[:, :-3], mask[:, :-3])
    assert segmentation_scores(padded, mask, ignore) == pytest.approx(cut)
    assert segmentation_scores(padded, mask) != pytest.approx(cut)
    assert pointing_game(padded, mask, ignore) == pointing_game(relevance[:, :-3], mask[:, :-3])
    np.testing.assert_array_equal(
        evidence_rank(padded, mask, ignore), evidence_rank(relevance[:, :-3], mask[:, :-3])
    )


def test_a_random_relevance_scores_worse_than_the_mask():
    rng = np.random.default_rng(2)
    mask = np.zeros((16, 8, 8), dtype=bool)
    mask[:, 2:5, 3:6] = True
    perfect = segmentation_scores(mask.astype(float), mask)
    random = segmentation_scores(rng.random(mask.shape), mask)
    for name in perfect:
        assert random[name] < perfect[name] - 0.2, name


# --- pointing game and evidence rank ----------------------------------------------------------------


def test_pointing_game_and_rank_by_hand():
    relevance = np.array([[0.1, 0.9, 0.3], [0.8, 0.2, 0.5], [0.5, 0.5, 0.1]])
    mask = np.array([[False, True, False], [False, False, True], [False, True, False]])
    # Item 2: a tie, the first maximum (element 0) wins, as numpy.argmax: a miss.
    assert pointing_game(relevance, mask) == pytest.approx(1 / 3)
    np.testing.assert_array_equal(evidence_rank(relevance, mask), [0, 1, 1])


@pytest.mark.parametrize("seed", range(10))
def test_rank_matches_brute_force_and_agrees_with_pointing(seed):
    rng = np.random.default_rng(seed)
    relevance = rng.integers(0, 4, (6, 2, 3)).astype(float)  # ties
    mask = rng.random((6, 2, 3)) < 0.3
    mask[:, 1, 2] = True
    ignore = rng.random((6, 2, 3)) < 0.2
    ignore[:, 1, 2] = False
    ranks = evidence_rank(relevance, mask, ignore)
    for item in range(6):
        kept = [
            (value, index)
            for index, value in enumerate(relevance[item].ravel())
            if not ignore[item].ravel()[index]
        ]
        order = sorted(kept, key=lambda pair: (-pair[0], pair[1]))  # high first, then by position
        best = next(r for r, (_, index) in enumerate(order) if mask[item].ravel()[index])
        assert ranks[item] == best
        top = max(kept, key=lambda pair: (pair[0], -pair[1]))[1]
        assert (ranks[item] == 0) == bool(mask[item].ravel()[top])
    assert pointing_game(relevance, mask, ignore) == pytest.approx(np.mean(ranks == 0))
    assert ranks.dtype == np.int64 and ranks.shape == (6,)


def test_an_ignored_maximum_is_passed_over():
    relevance = np.array([[9.0, 1.0, 2.0]])
    mask = np.array([[False, False, True]])
    assert pointing_game(relevance, mask) == 0.0
    assert pointing_game(relevance, mask, ignore=np.array([[True, False, False]])) == 1.0


def test_torch_tensors_are_taken():
    torch = pytest.importorskip("torch")
    relevance = torch.tensor([[0.2, 0.7]], requires_grad=True)
    assert pointing_game(relevance, torch.tensor([[False, True]])) == 1.0


# --- bad inputs ---------------------------------------------------------------------------------------

FUNCTIONS = [segmentation_scores, pointing_game, evidence_rank]


@pytest.mark.parametrize(("function", "case"), list(itertools.product(FUNCTIONS, range(9))))
def test_bad_inputs_name_the_problem(function, case):
    good = np.array([[0.1, 0.9]]), np.array([[False, True]])
    relevance, mask = good
    ignore = None
    expected: tuple = (ValueError, "")
    if case == 0:
        mask = np.array([[False, True, False]])
        expected = (ValueError, r"mask has shape \(1, 3\), but relevance has shape \(1, 2\)")
    elif case == 1:
        mask = np.array([[0, 1]])
        expected = (TypeError, "mask must be a boolean array.*int64.*mask > 0")
    elif case == 2:
        relevance = np.array([[np.nan, 1.0]])
        expected = (ValueError, "NaN .*item 0")
    elif case == 3:
        mask = np.array([[False, False]])
        expected = (ValueError, "1 item.* no evidence in mask .*item 0")
    elif case == 4:
        relevance, mask = np.zeros((0, 2)), np.zeros((0, 2), dtype=bool)
        expected = (ValueError, r"no items \(N == 0\)")
    elif case == 5:
        relevance, mask = np.array([0.1, 0.9]), np.array([False, True])
        expected = (ValueError, r"shape \(N, ...\).*relevance\[None\]")
    elif case == 6:
        ignore = np.array([[True, True]])
        expected = (ValueError, "item 0 has every element ignored")
    elif case == 7:
        ignore = np.array([[0, 1]])
        expected = (TypeError, "ignore must be a boolean array")
    else:
        relevance = np.array([["a", "b"]])
        expected = (TypeError, "relevance must hold real numbers")
    with pytest.raises(expected[0], match=expected[1]):
        function(relevance, mask, ignore)


def test_evidence_only_under_ignore_counts_as_none():
    with pytest.raises(ValueError, match="no evidence in mask outside ignore"):
        pointing_game(np.array([[0.1, 0.9]]), np.array([[False, True]]), np.array([[False, True]]))


def test_nan_in_ignored_elements_is_allowed():
    relevance = np.array([[np.nan, 0.2, 0.9]])
    mask = np.array([[False, False, True]])
    assert pointing_game(relevance, mask, np.array([[True, False, False]])) == 1.0
