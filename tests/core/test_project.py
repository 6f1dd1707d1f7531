"""The README's two commands are what CI runs, so a green CI means a newcomer's set-up works."""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[2]


def readme_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Two commands", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line for line in block.splitlines() if line.strip()]


def test_readme_has_exactly_two_commands():
    commands = readme_commands()
    assert len(commands) == 2
    assert "pip install -c constraints.txt" in commands[0] and "python -m visualizer" in commands[0]
    assert commands[1].endswith("python -m pytest")


def test_ci_runs_the_readme_commands_verbatim():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    for command in readme_commands():
        assert command in ci, f"{command!r} is not a line of .ci/run"


def test_constraints_pin_what_the_issue_requires():
    pins = dict(
        line.split("==")
        for line in (ROOT / "constraints.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    assert pins["torch"] == "2.14.1" and pins["torchvision"] == "0.29.1"
    assert pins["bytecode"] == "0.19.1"


def test_package_metadata_lives_in_pyproject_and_all_is_the_union_of_the_extras():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["name"] == "transformer-visualizer" and project["dynamic"] == ["version"]
    extras = project["optional-dependencies"]
    union = {requirement for name, group in extras.items() if name != "all" for requirement in group}
    assert set(extras["all"]) == union
    assert (ROOT / "visualizer" / "py.typed").exists()
    assert "setup()" in (ROOT / "setup.py").read_text()  # the shim the agreed layout keeps


def test_readme_fits_on_a_few_screens_and_the_index_gets_its_own_description():
    import tomllib

    assert len((ROOT / "README.md").read_text().splitlines()) <= 250
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    description = (ROOT / project["readme"]).read_text()
    # The package index cannot resolve the repository's relative images and links.
    assert not re.findall(r"\]\((?!https://)[^)]*\)", description)
    assert project["authors"] and "transformers>=5" in " ".join(project["optional-dependencies"]["models"])


def test_ci_builds_the_docs_strictly_and_tests_the_installed_wheel():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "mkdocs build --strict" in ci
    assert (
        "python -m build" in ci and ".venv-wheel/bin/pytest" in ci and "transformer-visualizer --help" in ci
    )
    assert (ROOT / "mkdocs.yml").exists() and (ROOT / "CONTRIBUTING.md").exists()
