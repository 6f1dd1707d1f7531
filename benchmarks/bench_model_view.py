"""The model view's file size, build time and load time for long captures, on the CPU.

    python benchmarks/bench_model_view.py                       # 512, 1,024 and 4,096 tokens
    python benchmarks/bench_model_view.py --lengths 512 --quick  # seconds: a smoke test
    python benchmarks/bench_model_view.py --json model_view.json

The model is a tiny GPT-2 (``GPT2Config``: 4 layers, 8 heads, width 64, random weights,
``sdpa``), batch 1, captured with ``capture_attention`` (maps rebuilt on demand). For each
length: ``model_view(maps, tokens)`` is built (thumbnails of at most 64 x 64 cells; the
detail is the head view up to 512 tokens, above that a heat map of at most 256 x 256 block
means, read in row blocks), and saved; the build time is the best of ``--rounds``. With
Chromium on PATH the file is opened headless, and the time to ``dataset.ready`` and to a
click's detail panel is the best of ``--rounds``, both timed inside the page
(``performance.now()``). Times are noisy on a shared machine: read the sizes, and the times
as rough figures.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "view")]


def capture(length: int):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from visualizer import capture_attention

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=500, n_positions=length, n_embd=64, n_layer=4, n_head=8)
    model = GPT2LMHeadModel(config).eval()
    ids = torch.randint(0, 500, (1, length))
    with capture_attention(model) as maps, torch.no_grad():
        model(ids)
    return maps


def open_times(path: pathlib.Path, rounds: int) -> dict | None:
    from view_browser import Chromium, find_chromium

    if find_chromium() is None:
        return None
    ready, detail = [], []
    with Chromium.launch() as browser:
        page = browser.new_page(1200, 900)
        for _ in range(rounds):
            page.goto(path.as_uri(), timeout=60)
            page.wait_for(
                "document.querySelector('.tvz') && document.querySelector('.tvz').dataset.ready", 60
            )
            # Timed in the page (DevTools round trips on a loaded machine add seconds of their own):
            # from the start of navigation to the view drawn, and from a click to its detail panel.
            ready.append(float(page.evaluate("document.querySelector('.tvz').dataset.readyMs")) / 1e3)
            detail.append(page.evaluate(CLICK) / 1e3)
        errors = list(page.errors)
    return {"ready_s": min(ready), "detail_s": min(detail), "errors": errors}


CLICK = """new Promise(resolve => {
  const root = document.querySelector('.tvz'), start = performance.now();
  new MutationObserver(() => { if (root.dataset.selected) resolve(performance.now() - start); })
    .observe(root, {attributes: true});
  document.querySelectorAll('.tvz-thumb')[9].click();
})"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[512, 1024, 4096])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one round")
    parser.add_argument("--json", type=pathlib.Path)
    args = parser.parse_args()
    rounds = 1 if args.quick else args.rounds

    from visualizer.view import model_view

    results = []
    folder = pathlib.Path(tempfile.mkdtemp(prefix="tvz-bench-"))
    for length in args.lengths:
        maps = capture(length)
        tokens = [f"t{i}" for i in range(length)]
        builds = []
        for _ in range(rounds):
            start = time.perf_counter()
            view = model_view(maps, tokens)
            document = view.html
            builds.append(time.perf_counter() - start)
        path = folder / f"model_{length}.html"
        path.write_text(document, encoding="utf-8")
        result = {
            "tokens": length,
            "layers": 4,
            "heads": 8,
            "megabytes": round(len(document.encode()) / 1e6, 3),
            "float32_maps_megabytes": round(4 * 8 * length * length * 4 / 1e6, 1),
            "build_s": round(min(builds), 3),
        }
        browser = open_times(path, rounds)
        if browser is not None:
            result.update({k: round(v, 3) if isinstance(v, float) else v for k, v in browser.items()})
        results.append(result)
        print(json.dumps(result), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
