"""The demo's inputs, and one short survey of the real DINOv2 weights (two photographs)."""

import numpy as np
import torch

from visualizer import capture_attention, survey
from visualizer._survey import natural_images, wordnet_glosses


def test_the_demo_reads_real_photographs_and_real_sentences():
    from PIL import Image

    paths = natural_images()
    assert len(paths) == 21 and paths[-1].name == "grace_hopper.jpg"
    for path in paths:
        with Image.open(path) as image:
            assert min(image.size) >= 100  # photographs, not icons
    texts = wordnet_glosses(300)
    assert len(texts) == len(set(texts)) == 300
    assert all(len(text.split()) >= 6 and text.endswith(".") for text in texts)


def test_dinov2_distance_agrees_with_mean_attention_distance_on_real_weights(tmp_path, monkeypatch):
    from visualizer.analysis import mean_attention_distance
    from visualizer.models import load_vit, prepare_image

    monkeypatch.setenv(
        "VISUALIZER_CACHE", str(tmp_path)
    )  # the converted weights kept out of the user's cache
    model = load_vit()
    paths = natural_images()[4:6]  # chelsea, clock_motion
    result = survey(model, paths, measures=["distance", "sink"], batch_size=2)
    pixels = torch.cat([prepare_image(path)[0] for path in paths])
    with torch.no_grad(), capture_attention(model) as maps:
        model(pixels)
    assert maps.info(0).rebuilt  # the fused kernel kept; the survey read rebuilt rows
    expected = mean_attention_distance(maps, (16, 16), patch_size=14).mean(axis=1)
    np.testing.assert_allclose(result.mean("distance"), expected, rtol=1e-5)
    np.testing.assert_allclose(
        result.mean("sink"), np.stack([m[:, :, :, 0].mean(axis=(0, 2)) for m in maps]), rtol=1e-5
    )
