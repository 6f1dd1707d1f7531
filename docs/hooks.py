"""mkdocs hooks: the pages and files the docs build generates, so none of them is written by hand.

- ``<!-- generated: cli -->`` becomes the help of every command of ``visualizer.cli``'s parser;
- ``<!-- generated: models -->`` the supported-model matrix, from what the registry-wide tests
  found (``docs/registry/*.json``, written by those tests) and from the timm adapter's inventory;
- ``<!-- generated: gallery -->`` the figures of ``assets/`` (``assets/make_figures.py``), with
  the captions of ``assets/README.md``;
- ``<!-- generated: view NAME -->`` an iframe of a live, offline view made at build time from the
  real weights (``views/NAME.html`` in the site);
- the "Notebooks" section: one page per ``notebooks/*.ipynb`` (mkdocs-jupyter), each from its
  executed copy in ``build/executed-notebooks/`` (written by ``tests/notebooks``) when there is
  one for the same cells; ``VISUALIZER_DOCS_EXECUTED=1`` makes a missing copy an error (CI).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import shutil
import time

from mkdocs.exceptions import PluginError
from mkdocs.plugins import event_priority
from mkdocs.structure.files import File

ROOT = pathlib.Path(__file__).resolve().parents[1]
EXECUTED = ROOT / "build" / "executed-notebooks"
MARKER = re.compile(r"<!-- generated: (\w+)(?: (\w+))? -->")
SENTENCE = "The cat sat on the mat because it was tired."


# -- notebooks -----------------------------------------------------------------------------------


def _cells(path: pathlib.Path) -> list[tuple[str, str]]:
    return [(cell["cell_type"], "".join(cell["source"])) for cell in json.loads(path.read_text())["cells"]]


def _title(path: pathlib.Path) -> str:
    for kind, source in _cells(path):
        if kind == "markdown" and source.lstrip().startswith("#"):
            return source.lstrip().splitlines()[0].lstrip("#").strip()
    return path.stem.replace("-", " ")


def _notebook_source(path: pathlib.Path) -> pathlib.Path:
    """The executed copy of ``path`` if one exists for the same cells, else ``path`` itself."""
    executed = EXECUTED / path.name
    if executed.exists() and _cells(executed) == _cells(path):
        return executed
    if os.environ.get("VISUALIZER_DOCS_EXECUTED") == "1":
        raise PluginError(
            f"no executed copy of notebooks/{path.name} in {EXECUTED}: run "
            "`python -m pytest tests/notebooks` first (it writes them), or unset VISUALIZER_DOCS_EXECUTED"
        )
    return path


def on_config(config):
    notebooks = sorted((ROOT / "notebooks").glob("*.ipynb"))
    for entry in config.nav:
        if isinstance(entry, dict) and "Notebooks" in entry:
            entry["Notebooks"] = [{_title(path): f"notebooks/{path.name}"} for path in notebooks]
    return config


@event_priority(100)  # before mkdocs-jupyter's on_files, which turns .ipynb files into pages
def on_files(files, config):
    # mkdocs-jupyter reads a page from src_dir / src_uri, so the chosen copy goes to a staging
    # folder under that name.
    staging = ROOT / "build" / "docs-notebooks"
    (staging / "notebooks").mkdir(parents=True, exist_ok=True)
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        shutil.copyfile(_notebook_source(path), staging / "notebooks" / path.name)
        files.append(File(f"notebooks/{path.name}", str(staging), config.site_dir, config.use_directory_urls))
    for path in sorted((ROOT / "assets").glob("*.png")):
        files.append(File(f"assets/{path.name}", str(ROOT), config.site_dir, False))
    return files


# -- generated pages -----------------------------------------------------------------------------


def _commands(parser: argparse.ArgumentParser, prefix: str) -> list[tuple[str, argparse.ArgumentParser]]:
    found = [(prefix, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += _commands(sub, f"{prefix} {name}")
    return found


def cli_reference() -> str:
    from visualizer.cli import _parser

    os.environ.setdefault("COLUMNS", "100")  # the help's line width, the same on every machine
    parts = []
    for name, parser in _commands(_parser(), "transformer-visualizer"):
        parts.append(f"## `{name}`\n\n```text\n{parser.format_help().rstrip()}\n```\n")
    return "\n".join(parts)


def gallery() -> str:
    rows = []
    for line in (ROOT / "assets" / "README.md").read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 2 or not cells[0].startswith("`"):
            continue
        names = re.findall(r"`([\w.]+\.png)`", cells[0])
        for name in names:
            if not (ROOT / "assets" / name).exists():
                raise PluginError(f"assets/README.md lists {name}, which assets/ lacks")
            rows.append(f"### {name}\n\n{cells[1][0].upper() + cells[1][1:]}.\n\n![{name}](assets/{name})\n")
    listed = {re.search(r"### (\S+)", row).group(1) for row in rows}
    unlisted = sorted(p.name for p in (ROOT / "assets").glob("*.png") if p.name not in listed)
    if unlisted:
        raise PluginError(f"assets/README.md does not describe {', '.join(unlisted)}")
    return "\n".join(rows)


def _registry(name: str) -> dict:
    path = ROOT / "docs" / "registry" / f"{name}.json"
    if not path.exists():
        raise PluginError(
            f"{path} is missing: run tests/capture/test_{name}_registry.py with VISUALIZER_WRITE_REGISTRY=1"
        )
    return json.loads(path.read_text())


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def model_matrix() -> str:
    from visualizer._adapters._timm_inventory import INVENTORY

    timm, hf = _registry("timm"), _registry("transformers")
    out = []
    cases = timm["cases"]
    tried = [c for c in cases.values() if c["outcome"] not in ("skipped", "slow")]
    out.append(
        f"## timm {timm['versions']['timm']}\n\n"
        f"`tests/capture/test_timm_registry.py` built one small model per family (torch "
        f"{timm['versions']['torch']}): {len(tried)} models tried, "
        f"{sum(c['maps'] for c in tried)} attention modules captured "
        f"({sum(c['rebuilt'] for c in tried)} of them rebuilt from the fused kernel's inputs), "
        f"{sum(len(c['refused']) for c in tried)} refusals of an attention class in a family, each "
        "with its reason (the test counts refused modules: several per class), "
        f"{len(cases) - len(tried)} skipped (left out, not buildable, or over the test's time cap "
        "on the machine that ran it). Each captured map equals a reference computed from "
        "the kernel's own inputs to 1e-5.\n\n"
        "| family | model tried | captured classes | maps (rebuilt) | refused |\n"
        "| --- | --- | --- | --- | --- |"
    )
    for family, c in cases.items():
        if c["outcome"] in ("skipped", "slow"):
            out.append(f"| {family} | {c['outcome']}: {_cell(c['reason'])} | | | |")
            continue
        refused = "; ".join(f"{cls}: {reason}" for cls, reason in c["refused"].items())
        out.append(
            f"| {family} | `{c['model']}` | {', '.join(c['captured']) or '-'} | "
            f"{c['maps']} ({c['rebuilt']}) | {_cell(refused) or '-'} |"
        )
    out.append(
        "\n### Every timm attention class the adapter knows\n\n"
        "From `visualizer/_adapters/_timm_inventory.py`, the table the timm adapter itself uses.\n\n"
        "| class | captured as | or refused because |\n| --- | --- | --- |"
    )
    for name, plan in sorted(INVENTORY.items()):
        if isinstance(plan, str):
            out.append(f"| `{name}` | | {_cell(plan)} |")
        else:
            how = f"{plan.kind}, {plan.layout}" + ("" if plan.switch else ", no fused switch")
            out.append(f"| `{name}` | {how}{'; ' + _cell(plan.note) if plan.note else ''} | |")
    cases = hf["cases"]
    counts: dict[str, int] = {}
    for c in cases.values():
        counts[c["outcome"]] = counts.get(c["outcome"], 0) + 1
    out.append(
        f"\n## transformers {hf['versions']['transformers']}\n\n"
        "`tests/capture/test_transformers_registry.py` built every base model of "
        "`MODEL_MAPPING_NAMES` from a tiny config and compared the capture with the model's own "
        f"eager `output_attentions`: {len(cases)} models, "
        + ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items()))
        + ". *table*: the model declares its attentions (`_can_record_outputs`); *fallback*: "
        "captured through its eager `output_attentions`.\n\n"
        "| model class | model type | outcome | layers rebuilt / eager | note |\n"
        "| --- | --- | --- | --- | --- |"
    )
    for name, c in cases.items():
        layers = f"{c['rebuilt']} / {c['eager']}" if "rebuilt" in c else ""
        note = c.get("reason", "") or ("sdpa and eager differ" if c.get("sdpa and eager differ") else "")
        model_class = name.split("-", 1)[1] if name.startswith(f"{c['model_type']}-") else name
        out.append(f"| {model_class} | `{c['model_type']}` | {c['outcome']} | {layers} | {_cell(note)} |")
    return "\n".join(out)


def view_frame(name: str, page) -> str:
    """One line of HTML (it may sit indented in a tab): the view in an iframe, and a link to it."""
    src = "../" * page.file.src_uri.count("/") + f"views/{name}.html"
    height = {"image": 640, "model": 720, "neuron": 560}.get(name, 520)
    return (
        f'<iframe src="{src}" title="{name} view" loading="lazy" '
        f'style="width:100%;height:{height}px;border:1px solid #8884"></iframe> '
        f'<a href="{src}" target="_blank">Open the {name} view on its own</a>'
    )


GENERATORS = {"cli": cli_reference, "models": model_matrix, "gallery": gallery}


def on_page_markdown(markdown, page, config, files):
    def replace(match):
        kind, name = match.groups()
        if kind == "view":
            return view_frame(name, page)
        if kind not in GENERATORS:
            raise PluginError(f"{page.file.src_uri}: unknown generated block {kind!r}")
        return GENERATORS[kind]()

    return MARKER.sub(replace, markdown)


# -- live views ----------------------------------------------------------------------------------


def on_post_build(config):
    """views/*.html: the offline views of the guides, from the real weights (a few seconds)."""
    import torch

    from visualizer import capture_attention
    from visualizer.models import load_bert, load_vit, prepare_image, sample_images
    from visualizer.view import head_view, image_view, model_view, neuron_view, text_view

    started = time.perf_counter()
    out = pathlib.Path(config.site_dir) / "views"
    out.mkdir(parents=True, exist_ok=True)
    bert, tokenizer = load_bert()
    inputs = tokenizer(SENTENCE, return_tensors="pt")
    with torch.no_grad(), capture_attention(bert) as maps:
        bert(**inputs)
    tokens = tokenizer.convert_ids_to_tokens(inputs["input_ids"][0])
    head_view(maps, tokens, layer=4, head=[0, 11]).save(out / "head.html")
    model_view(maps, tokens).save(out / "model.html")
    text_view(maps, tokens).save(out / "text.html")
    neuron_view(maps, tokens, layer=5, head=11, query=8, key=2).save(out / "neuron.html")
    vit = load_vit()
    x, shown = prepare_image(sample_images()["chelsea"])
    with torch.no_grad(), capture_attention(vit, layers=[4, 8, -1]) as vit_maps:
        vit(x)
    image_view(vit_maps, shown).save(out / "image.html")
    print(f"INFO    -  docs/hooks.py: views written in {time.perf_counter() - started:.1f} s")
