"""The README's runnable examples run as written: capture, plots, analysis and the view."""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[2]
SECTIONS = ["### One call for a whole model", "## Plots and analysis", "## The interactive views"]


def python_block(readme: str, heading: str) -> str:
    section = readme.split(heading, 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_examples_run_in_order(tmp_path, monkeypatch):
    readme = (ROOT / "README.md").read_text()
    monkeypatch.chdir(tmp_path)  # the examples write rollout.png and view.html
    namespace: dict = {}
    for heading in SECTIONS:
        exec(compile(python_block(readme, heading), f"README: {heading}", "exec"), namespace)
    assert tuple(namespace["maps"].stack().shape) == (12, 1, 6, 257, 257)
    assert (tmp_path / "rollout.png").stat().st_size > 10_000
    assert "<script" in (tmp_path / "view.html").read_text()
    for name in ("model.html", "text.html"):
        assert "<script" in (tmp_path / name).read_text()
