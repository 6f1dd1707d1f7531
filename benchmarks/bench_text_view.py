"""The text view at 4,096 tokens: its size, and how long headless Chromium takes to open it.

    python benchmarks/bench_text_view.py                       # 4,096 tokens, 4 layers x 8 heads
    python benchmarks/bench_text_view.py --tokens 2048 --rounds 7
    python benchmarks/bench_text_view.py --quick               # seconds: the CI smoke test (256 tokens)
    python benchmarks/bench_text_view.py --json benchmarks/results/text_view.json

The maps are real: a tiny random Llama (``LlamaConfig``: hidden 256, 4 layers, 8 heads, 2
key/value heads, intermediate 512, vocabulary 1,000; eval, float32, ``sdpa``) runs one forward
over random token ids under ``capture_attention`` (lazy: queries and keys kept), and
``text_view(maps, tokens)`` reads them a block of rows at a time. Two initialisations
(``--init``): transformers' default ``initializer_range=0.02``, whose attention is nearly
uniform over the causal prefix (the worst case for a view that keeps each row's strongest
weights: they hold little of the mass, and the binned rest is noise to deflate), and 0.1,
whose attention is peaked, as a trained model's is.

Figures, per initialisation: the share of the attention mass the kept weights hold; the
saved file's size (MB = 10**6 bytes); the time to build the view (the maps rebuilt block by
block, the rows encoded); the time to open it: from ``Page.navigate`` of the ``file://`` URL
to ``dataset.ready === "1"`` (the payload inflated and decoded, 4,096 spans laid out, the
first shading drawn), in a fresh tab each run, the median of ``--rounds`` runs; and one
redraw (the mean over heads of a row, then of a column, 4,096 tokens shaded), the median of
20, timed inside the page. The targets: under 10 MB and under 3 s to open.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "view"))  # the DevTools driver of the browser tests

SCRIPT = str(pathlib.Path(__file__).resolve())
LLAMA = {
    "hidden_size": 256,
    "num_hidden_layers": 4,
    "num_attention_heads": 8,
    "num_key_value_heads": 2,
    "intermediate_size": 512,
    "vocab_size": 1000,
}
TARGET_MB, TARGET_OPEN_S = 10.0, 3.0
WORDS = ["The", "Ġmodel", "Ġreads", "Ġthe", "Ġtext", ",", "Ġone", "Ġtoken", "Ġat", "Ġa", "Ġtime", ".", "Ċ"]
READY = (
    "(() => { const r = document.querySelector('.tvz'); "
    "return r && (r.dataset.ready || r.dataset.error); })()"
)
ERROR = "document.querySelector('.tvz').dataset.error"
REDRAW = """(() => {
  const root = document.querySelector('.tvz'), tokens = root.querySelectorAll('.tvz-tok');
  tokens[Math.floor(tokens.length / 2)].dispatchEvent(new MouseEvent('click', {bubbles: true}));
  const row = root.querySelector(".tvz-direction [data-value='row']");
  const column = root.querySelector(".tvz-direction [data-value='column']");
  const times = [];
  for (let i = 0; i < 20; i++) {
    const start = performance.now();
    (i % 2 ? row : column).click();
    document.body.offsetHeight;  // style and layout included
    times.push(performance.now() - start);
  }
  times.sort((a, b) => a - b);
  return times[10];
})()"""


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--init", type=float, nargs="+", default=[0.02, 0.1])
    parser.add_argument("--rounds", type=int, default=5, help="browser opens per view (median)")
    parser.add_argument("--quick", action="store_true", help="256 tokens, 1 round, one init: a smoke test")
    parser.add_argument("--json", type=pathlib.Path)
    args = parser.parse_args(argv)
    if args.quick:
        args.tokens, args.rounds, args.init = 256, 1, args.init[:1]
    return args


def build_view(tokens: int, init: float):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from visualizer import capture_attention
    from visualizer.view import text_view

    torch.manual_seed(0)
    config = LlamaConfig(**LLAMA, max_position_embeddings=max(tokens, 2048), initializer_range=init)
    model = LlamaForCausalLM(config).eval()
    model.set_attn_implementation("sdpa")
    ids = torch.randint(0, LLAMA["vocab_size"], (1, tokens))
    with torch.no_grad(), capture_attention(model) as maps:
        model(input_ids=ids)
    assert all(info.rebuilt for info in maps.infos)
    start = time.perf_counter()
    view = text_view(maps, [WORDS[i % len(WORDS)] for i in range(tokens)])
    return view, time.perf_counter() - start


def open_times(path: pathlib.Path, rounds: int) -> tuple[list[float], float]:
    from view_browser import Chromium

    times, redraw = [], None
    with Chromium.launch() as browser:
        for _ in range(rounds):
            page = browser.new_page(width=1200, height=900)
            start = time.perf_counter()
            page.goto(path.as_uri(), timeout=120)
            state = page.wait_for(READY, timeout=120)
            times.append(time.perf_counter() - start)
            if state != "1":
                raise RuntimeError(f"the view failed to open: {page.evaluate(ERROR)}")
            if redraw is None:
                redraw = page.evaluate(REDRAW)
            if page.errors:
                raise RuntimeError(f"console errors: {page.errors}")
            browser.send("Target.closeTarget", {"targetId": page.target})
            browser.pages.remove(page)
    return times, redraw


def main(argv=None) -> None:
    import torch
    import transformers

    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse(argv)
    command = " ".join(["python", "benchmarks/bench_text_view.py", *argv])
    print(f"# The text view: {args.tokens:,} tokens, 4 layers x 8 heads (tiny random Llama, lazy capture)\n")
    versions = f"torch {torch.__version__}, transformers {transformers.__version__}"
    print(f"- date: {time.strftime('%Y-%m-%d %H:%M %Z')}; {versions}")
    print(f"- command: {command}", flush=True)
    results = {"command": command, "tokens": args.tokens, "views": []}
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-text-view-") as folder:
        for init in args.init:
            view, build = build_view(args.tokens, init)
            path = view.save(pathlib.Path(folder) / f"text_{init}.html")
            size = path.stat().st_size / 1e6
            kept = float(
                json.loads(view.html.split('class="tvz-config">')[1].split("</script>")[0])["maps"][
                    "kept_mass"
                ]
            )
            times, redraw = open_times(path, args.rounds)
            entry = {
                "init": init,
                "kept_mass": kept,
                "mb": size,
                "build_s": build,
                "open_s": times,
                "open_median_s": statistics.median(times),
                "redraw_ms": redraw,
            }
            results["views"].append(entry)
            rows.append(entry)
    print(
        f"\n| initializer_range | kept mass | size (MB) | build (s) | open, median of {args.rounds} (s) "
        "| redraw (ms) |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for e in rows:
        print(
            f"| {e['init']:g} | {100 * e['kept_mass']:.1f}% | {e['mb']:.2f} | {e['build_s']:.1f} | "
            f"{e['open_median_s']:.2f} | {e['redraw_ms']:.1f} |"
        )
    print()
    for e in rows:
        met = e["mb"] < TARGET_MB and e["open_median_s"] < TARGET_OPEN_S
        verdict = "met" if met else "MISSED"
        print(
            f"- target (init {e['init']:g}): under {TARGET_MB:g} MB and {TARGET_OPEN_S:g} s to open: "
            f"{verdict} ({e['mb']:.2f} MB, {e['open_median_s']:.2f} s)"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
