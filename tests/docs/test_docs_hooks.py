"""The docs' generated pages (docs/hooks.py) say what the code and the tests say.

The CLI reference holds the help of every command of the parser, the gallery every figure of
``assets/`` with its caption, the model matrix every case the registry tests recorded; and the
API reference's docstring filter turns doctest lines into code blocks and Sphinx roles into
code. ``mkdocs build --strict`` itself runs in .ci/run.
"""

import argparse
import json
import pathlib
import sys

import pytest

pytest.importorskip("mkdocs")
ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "docs"))
import griffe_examples  # noqa: E402
import hooks  # noqa: E402


def test_the_cli_reference_has_every_command_and_option():
    from visualizer.cli import _parser

    text = hooks.cli_reference()
    names = [name for name, _ in hooks._commands(_parser(), "transformer-visualizer")]
    assert {
        "transformer-visualizer vit",
        "transformer-visualizer lm",
        "transformer-visualizer survey",
    } <= set(names)
    for name, parser in hooks._commands(_parser(), "transformer-visualizer"):
        assert f"## `{name}`" in text
        for action in parser._actions:
            for option in action.option_strings:
                assert option in text, f"{name}: {option}"
    assert isinstance(_parser(), argparse.ArgumentParser)


def test_the_gallery_shows_every_figure_of_assets():
    text = hooks.gallery()
    for path in (ROOT / "assets").glob("*.png"):
        assert f"](assets/{path.name})" in text


def test_the_model_matrix_lists_what_the_registry_tests_recorded():
    pytest.importorskip("timm")
    text = hooks.model_matrix()
    for name in ("timm", "transformers"):
        cases = json.loads((ROOT / "docs" / "registry" / f"{name}.json").read_text())["cases"]
        assert cases
        for case, found in cases.items():
            row = (
                f"| {case} |" if name == "timm" else f"| {case.split('-', 1)[1]} | `{found['model_type']}` |"
            )
            assert row in text, case


def test_docstring_examples_become_code_and_roles_code():
    text = (
        "Rollout.\n>>> rollout(maps)[0][1]\n(1, 2)\n\nSee :func:`rollout`, :class:`~visualizer.LayoutError`."
    )
    out = griffe_examples.roles(griffe_examples.fence(text))
    assert out == (
        "Rollout.\n\n```pycon\n>>> rollout(maps)[0][1]\n(1, 2)\n```\n\nSee `rollout`, `LayoutError`."
    )
    indented = "Example::\n\n    >>> x\n"
    assert griffe_examples.fence(indented) == indented.rstrip("\n")
