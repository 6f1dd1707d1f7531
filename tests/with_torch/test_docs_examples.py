"""The runnable examples of the README and the docs run as written, and give what they say.

The README's two quick-start blocks (``get_local`` on timm's own ``Attention.forward``, then
``capture_attention`` on the real DINOv2 weights) each run on their own; the guides' first
examples (capture, plots and analysis, the views) run in order, in one namespace, as a reader
who follows the guides would run them. Each result is checked against an independent count:
one map per block, rows that sum to 1, files written.
"""

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
GUIDES = ["docs/guides/capture-attention.md", "docs/guides/plots-analysis.md", "docs/guides/views.md"]


def python_blocks(path: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", (ROOT / path).read_text(), re.S | re.M)


def test_the_readme_get_local_example_runs():
    torch = pytest.importorskip("torch")
    (block, _) = python_blocks("README.md")[:2]
    namespace: dict = {}
    exec(compile(block, "README: get_local", "exec"), namespace)
    cache = namespace["cache"]
    assert len(cache["Attention.forward"]) == len(namespace["model"].blocks) == 12
    first = torch.as_tensor(cache["Attention.forward"][0])
    assert tuple(first.shape) == (1, 6, 197, 197)
    torch.testing.assert_close(first.sum(-1), torch.ones(1, 6, 197))


def test_the_readme_capture_example_runs():
    torch = pytest.importorskip("torch")
    block = python_blocks("README.md")[1]
    namespace: dict = {}
    exec(compile(block, "README: capture_attention", "exec"), namespace)
    maps = namespace["maps"]
    assert tuple(maps.stack().shape) == (12, 1, 6, 257, 257)
    assert torch.equal(maps[8], maps["blocks.8.attn"])
    torch.testing.assert_close(maps[8].sum(-1), torch.ones(1, 6, 257))


def test_the_guides_examples_run_in_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the examples write rollout.png and the views
    namespace: dict = {}
    for path in GUIDES:
        exec(compile(python_blocks(path)[0], path, "exec"), namespace)
    assert tuple(namespace["maps"].stack().shape) == (12, 1, 6, 257, 257)
    assert (tmp_path / "rollout.png").stat().st_size > 10_000
    for name in ("view.html", "model.html", "text.html"):
        assert "<script" in (tmp_path / name).read_text()


def test_the_package_index_description_runs_and_has_no_relative_links():
    torch = pytest.importorskip("torch")
    text = (ROOT / "README.pypi.md").read_text()
    targets = re.findall(r"\]\(([^)]+)\)", text) + re.findall(r'src="([^"]+)"', text)
    assert all(target.startswith("https://") for target in targets), targets  # they break on the index
    namespace: dict = {}
    exec(compile(python_blocks("README.pypi.md")[0], "README.pypi.md", "exec"), namespace)
    assert len(namespace["cache"]["Attention.forward"]) == 12
    torch.testing.assert_close(namespace["maps"][8].sum(-1), torch.ones(1, 6, 197))
    torch.testing.assert_close(
        namespace["maps"][8], torch.as_tensor(namespace["cache"]["Attention.forward"][8])
    )
