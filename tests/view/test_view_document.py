"""The HTML itself: self-contained, its payload decodes to the input, and it embeds safely."""

import base64
import html
import re
import struct
import zlib

import numpy as np
import pytest
from view_data import config_of, embedded, softmax_maps, srcdoc_of

from visualizer.view import head_view, image_view, model_view
from visualizer.view._codec import decode_maps, max_error
from visualizer.view._document import read_static

TOKENS = ["[CLS]", "a", "b", "c", "[SEP]"]


@pytest.fixture
def documents(maps, vit_maps, picture):
    return {
        "head": head_view(maps, TOKENS).html,
        "image": image_view(vit_maps, picture).html,
        "model": model_view(maps, TOKENS).html,
        "model-image": model_view(vit_maps, image=picture).html,
    }


def test_documents_are_self_contained(documents):
    for kind, document in documents.items():
        lowered = document.lower()
        assert "http://" not in lowered and "https://" not in lowered, kind
        assert not re.search(r"<script[^>]*\ssrc\s*=", lowered), kind
        assert not re.search(r"""(src|href)\s*=\s*["']?//""", lowered), kind  # protocol-relative URLs
        assert "<link" not in lowered and "@import" not in lowered and "url(" not in lowered, kind
        assert "require(" not in lowered and "requirejs" not in lowered, kind
        assert "fetch(" not in lowered and "xmlhttprequest" not in lowered, kind
        assert lowered.startswith("<!doctype html>") and '<meta charset="utf-8">' in lowered, kind
        # Exactly the blocks the runtime expects: config, payload, (picture,) one script.
        scripts = re.findall(r"<script([^>]*)>", document)
        data_types = [s for s in scripts if "type=" in s]
        assert len(scripts) == len(data_types) + 1, kind
        assert document.count("</script>") == len(scripts), kind


def test_static_files_cannot_close_their_script():
    for name in ("runtime.js", "head_view.js", "image_view.js", "model_view.js"):
        text = read_static(name)
        assert "</script" not in text.lower() and "<!--" not in text, name
    assert "</style" not in read_static("view.css").lower()
    assert "</style" not in read_static("model_view.css").lower()


@pytest.mark.parametrize("batch", [0, 1])
def test_head_view_payload_decodes_to_the_input(maps, batch):
    view = head_view(maps, TOKENS, batch=batch, layers=[1, 0], include_heads=[2, 1])
    config = config_of(view.html)
    back = decode_maps(embedded(view.html, "tvz-data"), config["maps"])
    expected = np.stack([maps[1][batch][[2, 1]], maps[0][batch][[2, 1]]])
    assert back.shape == expected.shape
    assert (np.abs(back - expected) <= max_error(expected, config["maps"])).all()
    assert np.abs(back - expected).max() < 0.004  # 8-bit codes at this size
    assert config["layers"] == ["layer 1", "layer 0"] and config["heads"] == ["2", "1"]


def test_image_view_payload_and_picture_decode_to_the_input(vit_maps, picture):
    view = image_view(vit_maps, picture, heads=[1])
    config = config_of(view.html)
    back = decode_maps(embedded(view.html, "tvz-data"), config["maps"])
    expected = np.stack([layer[0][[1]] for layer in vit_maps])
    assert (np.abs(back - expected) <= max_error(expected, config["maps"])).all()
    np.testing.assert_array_equal(back[..., 0], expected[..., 0])  # CLS weights stored exactly
    assert config["grid"] == [3, 4] and config["prefix"] == ["CLS"]
    assert config["panel"] == [336, 252]  # 40x30 picture, longest side 336
    assert config["initial"] == {"layer": 2, "head": "mean", "query": 0}
    assert _decode_png(base64.b64decode(embedded(view.html, "tvz-image"))).tolist() == picture.tolist()


def test_large_vit_maps_stay_a_few_megabytes():
    # 12 layers x 6 heads x 257 x 257, like a ViT-S at 224 px, but random: less structure than
    # real maps, so larger (real DINOv2 maps give about 3.7 MB; see visualizer/view/__init__.py).
    maps = list(softmax_maps((12, 6, 257, 257), seed=1, sharpness=2.0))  # 12 layers of one item
    view = image_view(maps, np.zeros((224, 224, 3), np.uint8))
    assert view.nbytes < 5.5e6
    assert image_view(maps, np.zeros((224, 224, 3), np.uint8), layers=[-1]).nbytes < view.nbytes / 8


def test_hostile_tokens_and_titles_stay_text(maps):
    tokens = ["</script><script>alert(1)</script>", "{{ID}}", "<!--", "&amp;", "\u2028"]
    title = "<b>bold</b> & {{SCRIPT}}"
    view = head_view(maps, tokens, title=title)
    config = config_of(view.html)
    assert config["tokens"] == tokens and config["title"] == title
    assert "<script>alert(1)" not in view.html
    assert f"<title>{html.escape(title)}</title>" in view.html


def test_every_copy_gets_its_own_element_id(maps):
    view = head_view(maps, TOKENS)
    copies = [view.fragment(), view.fragment(), srcdoc_of(view.iframe()), view.html]
    root = re.compile(r'<div class="tvz tvz-kind-head" id="(tvz-[0-9a-f]{16})">')
    ids = [root.search(copy).group(1) for copy in copies]
    assert len(set(ids)) == 4
    for copy, element_id in zip(copies, ids):
        # The script looks up exactly its own element.
        assert copy.count(element_id) == 2
        assert f'document.getElementById("{element_id}")' in copy


def test_repr_html_is_a_sandboxed_srcdoc_iframe(maps):
    view = head_view(maps, TOKENS)
    frame = view._repr_html_()
    assert re.search(r'<iframe srcdoc="[^"]+"[^>]* sandbox="allow-scripts"', frame)
    assert frame.count("<iframe") == 1 and "<script" not in frame  # all markup is escaped inside srcdoc
    document = srcdoc_of(frame)
    assert document.startswith("<!DOCTYPE html>")
    assert embedded(document, "tvz-data") == embedded(view.html, "tvz-data")
    assert f"height:{view.height}px" in frame
    tall = head_view([softmax_maps((1, 60, 60))], [str(i) for i in range(60)])
    assert "height:760px" in tall._repr_html_()  # long views scroll inside the frame


def test_display_puts_the_frame_or_the_fragment_in_the_output(maps, monkeypatch):
    display_module = pytest.importorskip("IPython.display")
    shown = []
    monkeypatch.setattr(display_module, "display", shown.append)
    view = head_view(maps, TOKENS)
    view.display()
    view.display(inline=True)
    assert shown[0].data.startswith('<div class="tvz-frame"') and "<iframe srcdoc=" in shown[0].data
    assert shown[1].data.startswith('<div class="tvz tvz-kind-head"')
    with pytest.raises(ValueError, match="height applies to the iframe only"):
        view.display(inline=True, height=300)


def _decode_png(png: bytes) -> np.ndarray:
    """A minimal PNG reader for 8-bit RGB, filter types 0-4: enough to check what the view embeds."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    position, chunks = 8, {}
    while position < len(png):
        length, kind = struct.unpack(">I4s", png[position : position + 8])
        chunks.setdefault(kind, b"")
        chunks[kind] += png[position + 8 : position + 8 + length]
        position += 12 + length
    width, height, depth, color = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (depth, color) == (8, 2)
    raw = np.frombuffer(zlib.decompress(chunks[b"IDAT"]), np.uint8).reshape(height, 1 + width * 3)
    out = np.zeros((height, width * 3), np.int32)
    for y in range(height):
        kind, line = raw[y, 0], raw[y, 1:].astype(np.int32)
        for x in range(width * 3):
            a = out[y, x - 3] if x >= 3 else 0
            b = out[y - 1, x] if y else 0
            c = out[y - 1, x - 3] if y and x >= 3 else 0
            p = a + b - c
            paeth = a if abs(p - a) <= min(abs(p - b), abs(p - c)) else b if abs(p - b) <= abs(p - c) else c
            predictor = [0, a, b, (a + b) // 2, paeth][kind]
            out[y, x] = (line[x] + predictor) % 256
    return out.reshape(height, width, 3).astype(np.uint8)


def test_the_notebook_form_is_ascii_and_its_frame_keeps_the_real_characters(vit_maps, picture):
    view = image_view(vit_maps, picture)
    assert not view.html.isascii()  # the image view's captions use "·"
    frame = view._repr_html_()
    assert frame.isascii()  # whatever charset the notebook page declares
    non_ascii = {character for character in view.html if not character.isascii()}
    assert non_ascii == {"·"} and non_ascii <= set(srcdoc_of(frame))


def test_ipython_picks_the_iframe_for_text_html(maps):
    formatters = pytest.importorskip("IPython.core.formatters")
    view = head_view(maps, TOKENS)
    data, _ = formatters.DisplayFormatter().format(view)
    assert data["text/html"].startswith('<div class="tvz-frame"')
    assert data["text/plain"].startswith("<AttentionView head:")
