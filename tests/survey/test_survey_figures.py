"""The survey's figures draw the survey's numbers."""

import matplotlib
import numpy as np
import pytest
from survey.survey_models import images, tiny_vit

from visualizer import survey

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def result():
    return survey(tiny_vit(depth=3), images(3), batch_size=3)


def test_distance_against_depth_has_a_dot_per_head_and_layer(result):
    figure = result.plot_distance()
    axes = figure.axes[0]
    mean = result.mean("distance")
    for head, dots in enumerate(axes.collections):
        np.testing.assert_allclose(dots.get_offsets(), np.c_[np.arange(3), mean[:, head]])
    np.testing.assert_allclose(axes.lines[0].get_ydata(), mean.mean(axis=1))
    assert "pixels" in axes.get_ylabel()  # 8-pixel patches
    assert axes.lines[1].get_ydata()[0] == pytest.approx(np.hypot(3, 3) * 8)  # the grid's diagonal


def test_entropy_heatmap_and_sink_and_cls_maps(result):
    np.testing.assert_allclose(result.plot_entropy().axes[0].images[0].get_array(), result.mean("entropy"))
    sink = result.plot_sink().axes[0]
    np.testing.assert_allclose(sink.lines[0].get_ydata(), result.mean("sink").mean(axis=1))
    panels = result.plot_cls_maps().axes
    assert len(panels) == 3
    np.testing.assert_allclose(panels[2].images[0].get_array(), result.cls_map()[2].mean(axis=0))


def test_a_survey_without_a_grid_has_no_cls_maps():
    from survey.survey_models import TEXTS, CharTokenizer, TorchText

    texts = survey(TorchText(), TEXTS[:2], tokenizer=CharTokenizer())
    assert texts.cls_map() is None
    with pytest.raises(ValueError, match="no CLS map"):
        texts.plot_cls_maps()
    with pytest.raises(KeyError, match="no measure 'distance'"):
        texts.plot_distance()
