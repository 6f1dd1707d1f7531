"""Counts that merge exactly: batch size, order and splitting the inputs do not change a survey."""

import numpy as np
import pytest
from survey.survey_models import TEXTS, CharTokenizer, images, tiny_bert, tiny_vit

from visualizer import SurveyResult, survey
from visualizer._survey._accumulate import Accumulator


def assert_same(a: SurveyResult, b: SurveyResult) -> None:
    assert a.layers == b.layers and a.measures == b.measures and a.inputs == b.inputs
    for measure in a.measures:
        np.testing.assert_array_equal(a.count(measure), b.count(measure))
        np.testing.assert_allclose(a.mean(measure), b.mean(measure), rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(a.std(measure), b.std(measure), rtol=1e-5, atol=1e-9)
        np.testing.assert_array_equal(a.histogram(measure)[1], b.histogram(measure)[1])
    if a.cls_map() is not None:
        np.testing.assert_allclose(a.cls_map(), b.cls_map(), rtol=1e-6)


@pytest.fixture(scope="module")
def vit():
    return tiny_vit()


def test_accumulators_merge_to_the_statistics_of_all_the_values():
    rng = np.random.default_rng(0)
    values = rng.random((6, 3, 40)) * 0.01 + 0.7  # a small spread about a large mean
    valid = rng.random((6, 3, 40)) > 0.3
    whole = Accumulator(1, 3, 20, centre=0.5)
    whole.add(0, values, valid)
    parts = [Accumulator(1, 3, 20, centre=0.5) for _ in range(3)]
    for i, (start, stop) in enumerate([(0, 1), (1, 4), (4, 6)]):
        parts[i].add(0, values[start:stop], valid[start:stop])
    merged = parts[2].merge(parts[0]).merge(parts[1])
    for head in range(3):
        picked = values[:, head][valid[:, head]]
        assert merged.count[0, head] == picked.size
        assert merged.mean()[0, head] == pytest.approx(picked.mean(), rel=1e-13)
        assert merged.std()[0, head] == pytest.approx(picked.std(), rel=1e-9)
        np.testing.assert_array_equal(
            merged.histogram[0, head], np.histogram(picked, bins=np.linspace(0, 1, 21))[0]
        )
    np.testing.assert_allclose(merged.vector(), whole.vector(), rtol=1e-14)  # float64 rounding only
    with pytest.raises(ValueError, match="differ in layers, heads, bins or centre"):
        merged.merge(Accumulator(1, 2, 20, centre=0.5))


def test_batch_size_and_order_do_not_change_an_image_survey(vit):
    inputs = images(6)
    one = survey(vit, inputs, batch_size=1)
    assert_same(one, survey(vit, inputs, batch_size=4))
    assert_same(one, survey(vit, inputs[::-1], batch_size=6))


def test_batch_size_and_order_do_not_change_a_text_survey():
    bert, tokenizer = tiny_bert(), CharTokenizer()
    one = survey(bert, TEXTS, tokenizer=tokenizer, batch_size=1)
    assert_same(one, survey(bert, TEXTS, tokenizer=tokenizer, batch_size=3))
    assert_same(one, survey(bert, TEXTS[::-1], tokenizer=tokenizer, batch_size=7))


def test_merging_two_surveys_is_one_survey_of_both(vit):
    inputs = images(5)
    merged = survey(vit, inputs[:2]).merge(survey(vit, inputs[2:], batch_size=3))
    assert_same(merged, survey(vit, inputs))
    assert merged.inputs == 5


def test_a_saved_survey_loads_and_merges(vit, tmp_path):
    inputs = images(4)
    result = survey(vit, inputs[:3])
    result.save(tmp_path / "survey.json")
    loaded = SurveyResult.load(tmp_path / "survey.json")
    assert_same(loaded, result)
    data = result.to_dict()
    assert data["schema"] == "transformer-visualizer/survey" and data["schema_version"] == 1
    assert data["inputs_counted"] == 3 and data["skipped_count"] == 0
    assert data["results"]["sink"]["mean"] == result.mean("sink").tolist()
    assert_same(loaded.merge(survey(vit, inputs[3:])), survey(vit, inputs))
    with pytest.raises(ValueError, match="differ"):
        loaded.merge(survey(vit, inputs[:1], measures=["sink"]))
    with pytest.raises(ValueError, match="not a survey"):
        SurveyResult.from_json('{"schema": "something else"}')
