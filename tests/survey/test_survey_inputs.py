"""What a survey reads: folders (recursively, unreadable files skipped and listed), text files,
DataLoaders, streams, and decoding in DataLoader workers."""

import numpy as np
import pytest
import torch
from PIL import Image
from survey.survey_models import TEXTS, CharTokenizer, TorchText, TorchViT, images
from survey.test_survey_merge import assert_same

from visualizer import survey
from visualizer.models import prepare_image


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    (root / "nested" / "deeper").mkdir(parents=True)
    paths = [root / "a.png", root / "nested" / "b.jpg", root / "nested" / "deeper" / "c.bmp"]
    for path in paths:
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(path)
    (root / "nested" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (root / "notes.txt").write_text("not an image")
    return root, paths


def test_a_folder_is_read_recursively_and_unreadable_files_are_skipped_and_listed(folder, capsys):
    root, paths = folder
    model = TorchViT()
    result = survey(model, root, batch_size=2, image_size=32, grid=(4, 4), num_workers=1)
    assert result.inputs == 3
    assert sorted(path for path, _ in result.skipped) == [
        str(root / "nested" / "broken.png"),
        str(root / "notes.txt"),
    ]
    assert all("Error" in reason for _, reason in result.skipped)
    data = result.to_dict()
    assert data["skipped_count"] == 2 and data["inputs"]["folder"] == str(root)
    assert data["inputs"]["files"] == sorted(data["inputs"]["files"]) and len(data["inputs"]["files"]) == 5
    assert "skipped 2 unreadable input(s)" in capsys.readouterr().err
    pixels = [prepare_image(path, size=32)[0][0] for path in sorted(paths)]  # the same images, decoded here
    assert_same(result, survey(model, pixels, grid=(4, 4)))


def test_a_text_file_is_one_text_per_line(tmp_path):
    path = tmp_path / "texts.txt"
    path.write_text("\n".join(TEXTS[:3]) + "\n\n   \n" + "\n".join(TEXTS[3:]) + "\n", encoding="utf-8")
    model, tokenizer = TorchText(), CharTokenizer()
    result = survey(model, path, tokenizer=tokenizer, batch_size=3, num_workers=1)
    assert result.inputs == len(TEXTS) and result.to_dict()["inputs"] == {
        "kind": "texts",
        "file": str(path),
        "lines": len(TEXTS),
    }
    assert_same(result, survey(model, TEXTS, tokenizer=tokenizer, batch_size=2))


def test_a_dataloader_and_a_stream_give_what_a_list_gives():
    model, inputs = TorchViT(), images(5)
    expected = survey(model, inputs, grid=(4, 4))
    loader = torch.utils.data.DataLoader(torch.stack(inputs), batch_size=2)
    assert_same(survey(model, loader, grid=(4, 4)), expected)
    labelled = torch.utils.data.DataLoader(list(zip(inputs, range(5))), batch_size=3)  # (pixels, labels)
    assert_same(survey(model, labelled, grid=(4, 4)), expected)
    assert_same(survey(model, iter(inputs), grid=(4, 4), batch_size=3), expected)
    text, tokenizer = TorchText(), CharTokenizer()
    batches = torch.utils.data.DataLoader(
        TEXTS, batch_size=3, collate_fn=tokenizer
    )  # dicts with attention_mask
    assert_same(survey(text, batches, kind="texts"), survey(text, TEXTS, tokenizer=tokenizer))


def test_a_transform_makes_the_model_inputs(folder):
    root, paths = folder
    model = TorchViT()
    seen = []

    def transform(image):
        seen.append(image.size)
        return torch.from_numpy(np.asarray(image.resize((32, 32)), dtype=np.float32) / 255).permute(2, 0, 1)

    result = survey(model, [str(p) for p in paths], transform=transform, grid=(4, 4))
    assert result.inputs == 3 and seen == [(48, 40)] * 3


def test_one_image_file_is_one_image(folder):
    root, paths = folder
    model = TorchViT()
    result = survey(model, paths[0], image_size=32, grid=(4, 4))
    assert result.inputs == 1 and result.to_dict()["inputs"] == {"kind": "images", "items": [str(paths[0])]}
    assert_same(result, survey(model, [prepare_image(paths[0], size=32)[0][0]], grid=(4, 4)))
