"""The survey's measures against maps and measures computed independently (timm's unfused softmax,
BERT's eager output_attentions, the measures written out row by row in numpy)."""

import numpy as np
import pytest
import torch
from survey.survey_models import (
    TEXTS,
    CharTokenizer,
    bert_reference_maps,
    images,
    reference_stats,
    row_values,
    tiny_bert,
    tiny_vit,
)

from visualizer import capture_attention, survey
from visualizer.analysis import mean_attention_distance


@pytest.fixture(scope="module")
def vit():
    return tiny_vit()


@pytest.fixture(scope="module")
def vit_result(vit):
    return survey(vit, images(5), batch_size=2)


@pytest.fixture(scope="module")
def vit_reference(vit):
    from survey.survey_models import vit_reference_maps

    return vit_reference_maps(vit, torch.stack(images(5)))


def test_image_measures_are_those_of_the_softmax_rows(vit_result, vit_reference):
    assert vit_result.measures == ("distance", "entropy", "sink", "self")
    assert vit_result.inputs == 5 and vit_result.heads == 3 and len(vit_result.layers) == 2
    for measure in vit_result.measures:
        for layer, a in enumerate(vit_reference):
            values, valid = row_values(a, measure, grid=(4, 4), prefix=1, patch=8.0)
            mean, std, count = reference_stats(values, valid)
            np.testing.assert_allclose(vit_result.mean(measure)[layer], mean, rtol=1e-5, atol=1e-7)
            np.testing.assert_allclose(vit_result.std(measure)[layer], std, rtol=1e-4, atol=1e-7)
            np.testing.assert_array_equal(vit_result.count(measure)[layer], count)
    assert vit_result.count("distance")[0, 0] == 5 * 16  # the patches are the queries, not CLS
    assert vit_result.count("sink")[0, 0] == 5 * 17


def test_histograms_count_the_normalised_values(vit_result, vit_reference):
    edges, counts = vit_result.histogram("sink")
    assert edges.shape == (21,) and counts.shape == (2, 3, 20)
    values, valid = row_values(vit_reference[1], "sink")
    expected = np.histogram(values[:, 2][valid[:, 2]], bins=edges)[0]
    np.testing.assert_array_equal(counts[1, 2], expected)
    _, distance = vit_result.histogram("distance")
    np.testing.assert_array_equal(distance.sum(axis=-1), vit_result.count("distance"))


def test_the_mean_cls_map_is_the_mean_cls_row_over_the_patches(vit_result, vit_reference):
    cls = vit_result.cls_map()
    assert cls.shape == (2, 3, 4, 4)
    for layer, a in enumerate(vit_reference):
        np.testing.assert_allclose(cls[layer], a[:, :, 0, 1:].mean(axis=0).reshape(3, 4, 4), rtol=1e-5)


def test_distance_agrees_with_mean_attention_distance(vit, vit_result):
    with torch.no_grad(), capture_attention(vit) as maps:
        vit(torch.stack(images(5)))
    per_image = mean_attention_distance(maps, (4, 4), patch_size=8)  # (layers, batch, heads)
    # every image has the same 16 query patches, so the mean over rows is the mean of the images' means
    np.testing.assert_allclose(vit_result.mean("distance"), per_image.mean(axis=1), rtol=1e-6)


def test_text_measures_count_real_tokens_only():
    bert = tiny_bert()
    tokenizer = CharTokenizer()
    result = survey(bert, TEXTS, tokenizer=tokenizer, batch_size=3)  # padded batches
    assert result.measures == ("entropy", "sink", "self", "previous")
    real = sum(len(text) + 1 for text in TEXTS)
    np.testing.assert_array_equal(result.count("entropy"), np.full((2, 4), real))
    np.testing.assert_array_equal(result.count("previous"), np.full((2, 4), real - len(TEXTS)))
    for measure in result.measures:
        per_text = []
        for text in TEXTS:  # each text alone: no padding at all
            maps = bert_reference_maps(bert, tokenizer([text]))
            per_text.append([row_values(a, measure) for a in maps])
        for layer in range(2):
            values = np.concatenate([t[layer][0] for t in per_text], axis=2)
            valid = np.concatenate([t[layer][1] for t in per_text], axis=2)
            mean, std, count = reference_stats(values, valid)
            np.testing.assert_allclose(result.mean(measure)[layer], mean, rtol=1e-5, atol=1e-7)
            np.testing.assert_allclose(result.std(measure)[layer], std, rtol=1e-4, atol=1e-7)
            np.testing.assert_array_equal(result.count(measure)[layer], count)


def test_measures_can_be_chosen(vit):
    result = survey(vit, images(2), measures=["sink"])
    assert result.measures == ("sink",)
    with pytest.raises(KeyError, match="no measure 'entropy'"):
        result.mean("entropy")


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"measures": ["loudness"]}, ValueError, "measures must be distinct names"),
        ({"measures": ["sink", "sink"]}, ValueError, "measures must be distinct names"),
        ({"batch_size": 0}, ValueError, "batch_size must be an int >= 1"),
        ({"batch_size": 2.5}, TypeError, "batch_size must be an int"),
        ({"num_workers": -1}, ValueError, "num_workers must be an int >= 0"),
        ({"checkpoint_every": 0}, ValueError, "checkpoint_every must be an int >= 1"),
    ],
)
def test_bad_options_are_refused(vit, options, error, match):
    with pytest.raises(error, match=match):
        survey(vit, images(1), **options)


def test_bad_inputs_are_refused(vit, tmp_path):
    with pytest.raises(TypeError, match="texts need tokenizer="):
        survey(tiny_bert(), ["a text"], kind="texts")
    with pytest.raises(ValueError, match="distance measure is over a patch grid"):
        survey(tiny_bert(), ["a text"], tokenizer=CharTokenizer(), measures=["distance"])
    with pytest.raises(ValueError, match="no such file or folder"):
        survey(vit, tmp_path / "missing")
    with pytest.raises(ValueError, match="holds no files"):
        survey(vit, tmp_path)
    with pytest.raises(ValueError, match="inputs is empty"):
        survey(vit, [])
    with pytest.raises(TypeError, match="inputs must be a folder"):
        survey(vit, 3)


def test_a_grid_that_does_not_fit_the_tokens_is_refused(vit):
    with pytest.raises(ValueError, match=r"grid 3 x 3 has 9 patches but the maps have 17 tokens = 1 prefix"):
        survey(vit, images(1), grid=(3, 3))
