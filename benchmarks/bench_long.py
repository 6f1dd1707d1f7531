"""Long sequences: the lazy capture (maps rebuilt on demand) against eager capture, on the CPU.

    python benchmarks/bench_long.py                            # 1,024 to 16,384 tokens
    python benchmarks/bench_long.py --lengths 1024 4096 --rounds 5
    python benchmarks/bench_long.py --models                   # the short ViT / MiniLM comparison only
    python benchmarks/bench_long.py --quick                    # seconds: the CI smoke test (256, 512)
    python benchmarks/bench_long.py --json benchmarks/results/long.json

The model is a tiny Llama (``LlamaConfig``: hidden 256, 4 layers, 8 heads, 2 key/value heads,
intermediate 512, vocabulary 1,000; random weights, eval, float32, ``sdpa``), batch 1. The
variants, each one step (``VARIANTS``):

1. ``sdpa``: the model's forward on ``sdpa`` (the baseline of the ratios);
2. ``eager``: the same model switched to ``eager``, nothing captured;
3. ``capture_eager``: ``capture_attention(model, lazy=False)``, every map computed eagerly;
4. ``capture_lazy``: ``capture_attention(model)`` (lazy=None): the queries and keys kept;
5. ``capture_last``: the same with ``layers=[-1]``;
6. ``rebuild_layer``: ``maps[-1]`` after a lazy capture (the capture outside the step);
7. ``rebuild_rows``: ``maps.rows(-1, slice(n - 256, n))``, the last 256 rows, which see the most keys;
8. ``layer_sdpa``: ``F.scaled_dot_product_attention`` on tensors of the last layer's recorded
   query and key shapes, ``is_causal=True``: what one layer's kernel costs, the reference of
   ``rebuild_layer`` and ``rebuild_rows``.

Times: interleaved rounds, shuffled per round (``model_timing``). Memory: the rise of the
peak RSS over one step after one warm-up step, each variant in a fresh process
(``model_memory``); a variant whose estimated need exceeds ``--memory-budget`` is skipped
and reported with the estimate (eager maps are ``layers x heads x n x n x 4`` bytes).

``--models``: the fused forward of DINOv2 ViT-S/14 and ViT-B/16 (224 px, batch 1 and 8) and
the ``sdpa`` forward of MiniLM-L6 (512 tokens, batch 8), against ``capture_attention`` with
``lazy=None`` and ``lazy=False`` (``model_configs``).
"""

from __future__ import annotations

import argparse
import gc
import json
import pathlib
import statistics
import sys

from model_memory import MB, one_forward_memory
from model_timing import measure, summarise
from variant import Variant

SCRIPT = str(pathlib.Path(__file__).resolve())
GB = 2**30
LENGTHS = (1024, 2048, 4096, 8192, 16384)
QUICK_LENGTHS = (256, 512)
ROWS = 256  # rows of the block rebuilt by rebuild_rows
LLAMA = {
    "hidden_size": 256,
    "num_hidden_layers": 4,
    "num_attention_heads": 8,
    "num_key_value_heads": 2,
    "intermediate_size": 512,
    "vocab_size": 1000,
}
LABELS = {
    "sdpa": "sdpa forward (baseline)",
    "eager": "eager forward, nothing captured",
    "capture_eager": "capture_attention(lazy=False)",
    "capture_lazy": "capture_attention() (lazy, all layers)",
    "capture_last": "capture_attention(layers=[-1])",
    "rebuild_layer": "maps[-1]: one whole layer rebuilt",
    "rebuild_rows": f"maps.rows(-1, last {ROWS} rows)",
    "layer_sdpa": "one layer's sdpa kernel (reference)",
}
VARIANTS = tuple(LABELS)
MODEL_IDS = ("dinov2-b1", "dinov2-b8", "vitb16-b1", "vitb16-b8", "minilm-512-b8")
QUICK_MODEL_IDS = ("dinov2-b1",)
MODEL_TARGETS = {"dinov2": 1.05, "vitb16": 1.05, "minilm": 1.15}


# -- the tiny Llama and its variants ------------------------------------------------------


def build_llama():
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(**LLAMA, max_position_embeddings=32768, attn_implementation="sdpa")
    return LlamaForCausalLM(config).eval()


def map_bytes(length: int) -> int:
    """One layer's map: heads x n x n float32 (batch 1)."""
    return LLAMA["num_attention_heads"] * length * length * 4


def estimated_need(key: str, length: int) -> int:
    """Bytes a step needs beyond the model, where it grows with n x n (0: linear in n).

    The eager attention holds about three (heads, n, n) float32 tensors at once (scores, scores
    plus the causal mask, their softmax) and the (n, n) mask; eager capture keeps every
    layer's map on top. One whole layer rebuilt is the map plus one block's scores."""
    one = map_bytes(length)
    if key == "eager":
        return 3 * one + length * length * 4
    if key == "capture_eager":
        return LLAMA["num_hidden_layers"] * one + 2 * one + length * length * 4
    if key == "rebuild_layer":
        return one + 2 * map_bytes(length) * ROWS // length
    return 0


def llama_variants(model, length: int, keys) -> list:
    """The variants ``keys`` for the tiny Llama on ``length`` random tokens."""
    import torch

    from visualizer import capture_attention

    ids = torch.randint(0, LLAMA["vocab_size"], (1, length), generator=torch.Generator().manual_seed(0))

    def forward():
        return model.model(input_ids=ids, use_cache=False).last_hidden_state

    def set_attention(name):
        return lambda: model.set_attn_implementation(name)

    kept = {}

    def capture(**options):
        def step():
            with capture_attention(model, **options) as maps:
                output = forward()
            kept["maps"] = maps
            return output

        return step

    def captured():
        """A lazy capture of every layer, made once, outside the timed steps."""
        if "lazy" not in kept:
            with capture_attention(model) as maps:
                forward()
            maps.cache_bytes = 0  # each timed read rebuilds: what a first read costs
            kept["lazy"] = maps
        return kept["lazy"]

    def rebuild_layer():
        kept["map"] = captured()[-1]
        return kept["map"]

    def rebuild_rows():
        kept["map"] = captured().rows(-1, slice(length - ROWS, length))
        return kept["map"]

    layer = {}

    def layer_sdpa():
        if "qkv" not in layer:
            recipe = captured().recipe(-1)
            query, key = torch.randn(recipe.query.shape), torch.randn(recipe.key.shape)
            layer["qkv"] = (query, key, torch.randn(recipe.key.shape))
            layer["gqa"] = query.shape[1] != key.shape[1]
        query, key, value = layer["qkv"]
        return torch.nn.functional.scaled_dot_product_attention(
            query, key, value, is_causal=True, enable_gqa=layer["gqa"]
        )

    def drop_step():
        kept.pop("maps", None)
        kept.pop("map", None)

    builders = {
        "sdpa": lambda: Variant("baseline", LABELS["sdpa"], forward),
        "eager": lambda: Variant(
            "eager", LABELS["eager"], forward, enter=set_attention("eager"), leave=set_attention("sdpa")
        ),
        "capture_eager": lambda: Variant(
            "capture_eager",
            LABELS["capture_eager"],
            capture(lazy=False),
            maps=lambda: list(kept["maps"]),
            reset=drop_step,
        ),
        "capture_lazy": lambda: Variant(
            "capture_lazy", LABELS["capture_lazy"], capture(), maps=lambda: _recipes(kept), reset=drop_step
        ),
        "capture_last": lambda: Variant(
            "capture_last",
            LABELS["capture_last"],
            capture(layers=[-1]),
            maps=lambda: _recipes(kept),
            reset=drop_step,
        ),
        "rebuild_layer": lambda: Variant(
            "rebuild_layer",
            LABELS["rebuild_layer"],
            rebuild_layer,
            maps=lambda: [kept["map"]],
            reset=drop_step,
        ),
        "rebuild_rows": lambda: Variant(
            "rebuild_rows", LABELS["rebuild_rows"], rebuild_rows, maps=lambda: [kept["map"]], reset=drop_step
        ),
        "layer_sdpa": lambda: Variant("layer_sdpa", LABELS["layer_sdpa"], layer_sdpa),
    }
    variants = [builders[key]() for key in keys]
    if any(v.key in ("rebuild_layer", "rebuild_rows", "layer_sdpa") for v in variants):
        captured()  # before any timing or measuring, so that no step pays for it
    return variants


class _Kept:
    """Stands for what a lazy capture keeps, for ``one_forward_memory``'s byte count."""

    def __init__(self, nbytes: int) -> None:
        self.nbytes = nbytes


def _recipes(kept: dict) -> list:
    return [_Kept(kept["maps"].kept_bytes())]


def check_llama(model, length: int) -> dict:
    """Fails loudly unless the captures return what they should; returns the shapes seen."""
    import torch

    variants = {v.key: v for v in llama_variants(model, length, VARIANTS)}
    base = variants["baseline"].step()
    layers, heads = LLAMA["num_hidden_layers"], LLAMA["num_attention_heads"]
    shape = (1, heads, length, length)
    for key in ("capture_last", "capture_lazy") if length <= 4096 else ("capture_lazy",):
        out = variants[key].step()
        if not torch.allclose(out, base, atol=1e-5):
            raise AssertionError(f"{key}: the output differs from the sdpa forward's")
    lazy = variants["capture_lazy"]
    lazy_maps = _last_maps(lazy)
    if len(lazy_maps) != layers or not all(lazy_maps.info(i).rebuilt for i in range(layers)):
        raise AssertionError(f"capture_lazy: expected {layers} rebuilt layers, got {lazy_maps!r}")
    if any(lazy_maps.shape(i) != shape for i in range(layers)):
        raise AssertionError(f"capture_lazy: shapes {[lazy_maps.shape(i) for i in range(layers)]}")
    if length <= 4096:  # the eager maps fit: the rebuilt ones must equal them
        eager = variants["capture_eager"]
        eager.step()
        eager_maps = eager.maps()
        for i in (0, layers - 1):
            if not torch.allclose(lazy_maps[i], eager_maps[i], atol=1e-6):
                raise AssertionError(f"layer {i}: the rebuilt map differs from the eager one")
        rows = variants["rebuild_rows"].step()
        if not torch.allclose(rows, eager_maps[-1][:, :, -ROWS:], atol=1e-6):
            raise AssertionError("rebuild_rows: the rows differ from the eager map's")
        del eager_maps
        eager.reset()
    recipe = lazy_maps.recipe(-1)
    lazy.reset()
    return {"query": list(recipe.query.shape), "key": list(recipe.key.shape), "causal": recipe.causal}


def _last_maps(variant):
    """The AttentionMaps the variant's last step kept (its closure's ``kept['maps']``)."""
    for cell in variant.step.__closure__ or ():
        value = cell.cell_contents
        if isinstance(value, dict) and "maps" in value:
            return value["maps"]
    raise AssertionError("the variant kept no maps")


def time_length(model, length: int, rounds: int, budget: int) -> dict:
    keys = [key for key in VARIANTS if estimated_need(key, length) <= budget]
    variants = llama_variants(model, length, keys)
    for variant in variants if length < 8192 else ():  # warm-up (the check ran the longest ones)
        variant.enter()
        variant.step()
        variant.reset()
        variant.leave()
    gc.collect()
    times = measure(variants, rounds, 1)
    stats = summarise(times)
    layer = times["layer_sdpa"]
    for key in ("rebuild_layer", "rebuild_rows"):
        if key in times:
            stats[key]["ratio_to_layer_medians"] = statistics.median(times[key]) / statistics.median(layer)
            stats[key]["ratio_to_layer_minimums"] = min(times[key]) / min(layer)
    return {"rounds": rounds, "seconds": times, "stats": stats, "skipped": sorted(set(VARIANTS) - set(keys))}


def memory_length(length: int, budget: int, model=None, keys=VARIANTS, threads=None) -> dict:
    """Per variant, in a fresh process: the peak RSS rise of one step, or why it was skipped.

    With ``model`` (``--quick``), every variant is measured in this process instead: quicker,
    and enough to exercise the path, but its figures are not those of a fresh process."""
    import subprocess

    results = {}
    for key in keys:
        need = estimated_need(key, length)
        if need > budget:
            results[key] = {"skipped": f"skipped (needs ~{need / GB:.1f} GB)", "need": need}
            continue
        if model is not None:
            (variant,) = llama_variants(model, length, [key])
            results[key] = one_forward_memory(variant)
            continue
        command = [sys.executable, SCRIPT, "--one-variant", str(length), key]
        command += ["--threads", str(threads)] if threads else []
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr.strip()[-2000:]}")
        results[key] = json.loads(done.stdout.strip().splitlines()[-1])
    return results


def run_one_variant(length: int, key: str) -> dict:
    model = build_llama()
    (variant,) = llama_variants(model, length, [key])
    return one_forward_memory(variant)


# -- verdicts and tables ------------------------------------------------------------------


def llama_verdicts(length: int, timing: dict, memory: dict) -> list:
    heads, rows = LLAMA["num_attention_heads"], []
    stats = timing["stats"]
    lazy, base = memory["capture_lazy"], memory["sdpa"]
    limit = 1.5 * base["peak_increase"] + lazy["maps_bytes"]
    rows.append(
        _verdict("all layers: peak rise <= 1.5x sdpa's + kept q, k", lazy["peak_increase"], limit, MB)
    )
    rows.append(
        _verdict("all layers: time <= 1.15x sdpa (medians)", stats["capture_lazy"]["ratio_of_medians"], 1.15)
    )
    if "rebuild_layer" in stats:
        ratio = stats["rebuild_layer"]["ratio_to_layer_medians"]
        rows.append(_verdict("one layer rebuilt: time <= 3x its sdpa (medians)", ratio, 3.0))
    block = memory["rebuild_rows"]["peak_increase"]
    rows.append(
        _verdict(
            f"{ROWS}-row block: peak <= 1.5x heads x {ROWS} x n x 4",
            block,
            1.5 * heads * ROWS * length * 4,
            MB,
        )
    )
    return [{"length": length, **row} for row in rows]


def _verdict(target: str, value: float, limit: float, unit: float | None = None) -> dict:
    return {
        "target": target,
        "value": value,
        "limit": limit,
        "unit": "MB" if unit else "x",
        "met": value <= limit,
    }


def _shown(row: dict) -> tuple[str, str, str]:
    if row["unit"] == "MB":
        value, limit = f"{row['value'] / MB:.0f} MB", f"{row['limit'] / MB:.0f} MB"
    else:
        value, limit = f"{row['value']:.2f}x", f"{row['limit']:.2f}x"
    ratio = row["value"] / row["limit"] if row["limit"] else float("inf")
    met = "met" if row["met"] else f"**missed** by {100 * (ratio - 1):.0f}%"
    return value, limit, met


def print_length(length: int, timing: dict, memory: dict) -> None:
    stats = timing["stats"]
    print(f"\n### Tiny Llama, {length:,} tokens, batch 1 ({timing['rounds']} rounds)\n")
    print("| variant | ratio of medians | ratio of minimums | ms median | peak RSS rise (MB) | kept (MB) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for key in VARIANTS:
        mem = memory.get(key, {"skipped": "not measured"})
        peak = mem.get("skipped") or f"{mem['peak_increase'] / MB:.0f}"
        kept = "" if "skipped" in mem else f"{mem['maps_bytes'] / MB:.0f}"
        row = stats.get("baseline" if key == "sdpa" else key)
        if row is None:
            print(f"| {LABELS[key]} | skipped | | | {peak} | {kept} |")
            continue
        extra = ""
        if "ratio_to_layer_medians" in row:
            layer = f"{row['ratio_to_layer_medians']:.2f}x / {row['ratio_to_layer_minimums']:.2f}x"
            extra = f" ({layer} its layer's sdpa)"
        print(
            f"| {LABELS[key]} | {row['ratio_of_medians']:.2f}x{extra} | {row['ratio_of_minimums']:.2f}x "
            f"| {row['median_ms']:.1f} | {peak} | {kept} |"
        )


def print_verdicts(verdicts: list) -> None:
    print("\n### Targets\n")
    print("| tokens | target | measured | limit | met |")
    print("| ---: | --- | ---: | ---: | --- |")
    for row in verdicts:
        value, limit, met = _shown(row)
        print(f"| {row['length']:,} | {row['target']} | {value} | {limit} | {met} |")


# -- the short comparison on the ViTs and MiniLM --------------------------------------------


def model_section(ids, rounds: int) -> dict:
    from model_configs import build_config
    from variant import features

    from visualizer import capture_attention

    results = {}
    print("\n### ViTs and MiniLM: capture against the fused / sdpa forward\n")
    print(
        "| config | fused/sdpa ms median | lazy (default): medians / minimums "
        "| lazy=False: medians / minimums | target | met (lazy) |"
    )
    print("| --- | ---: | --- | --- | ---: | --- |")
    for config_id in ids:
        config = build_config(config_id)
        kept = {}

        def capture(lazy, config=config, kept=kept):
            def step():
                with capture_attention(config.model, lazy=lazy) as maps:
                    output = config.model(**config.inputs)
                kept["maps"] = maps
                return features(output)

            return step

        base = Variant("baseline", "baseline", lambda config=config: features(config.model(**config.inputs)))
        variants = [
            base,
            Variant("lazy", "lazy", capture(None), reset=kept.clear),
            Variant("eager", "lazy=False", capture(False), reset=kept.clear),
        ]
        for variant in variants:  # warm-up, and a check that the lazy capture rebuilt every layer
            variant.step()
        variants[1].step()
        maps = kept["maps"]
        rebuilt = sum(maps.info(i).rebuilt for i in range(len(maps)))
        if rebuilt != config.layers or maps.shape(0) != config.map_shape:
            raise AssertionError(f"{config_id}: {rebuilt} of {config.layers} layers rebuilt, {maps!r}")
        del maps
        kept.clear()
        times = measure(variants, rounds, 1)
        stats = summarise(times)
        limit = MODEL_TARGETS[config_id.split("-")[0]]
        met = stats["lazy"]["ratio_of_medians"] <= limit
        results[config_id] = {
            "label": config.label,
            "seconds": times,
            "stats": stats,
            "limit": limit,
            "met": met,
        }
        lazy, eager = stats["lazy"], stats["eager"]
        ratio = lazy["ratio_of_medians"] / limit
        print(
            f"| `{config_id}` | {stats['baseline']['median_ms']:.0f} "
            f"| {lazy['ratio_of_medians']:.3f}x / {lazy['ratio_of_minimums']:.3f}x "
            f"| {eager['ratio_of_medians']:.3f}x / {eager['ratio_of_minimums']:.3f}x | {limit:.2f}x "
            f"| {'met' if met else f'**missed** by {100 * (ratio - 1):.0f}%'} |",
            flush=True,
        )
    return results


# -- main ---------------------------------------------------------------------------------


def parse(argv: list) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="256 and 512 tokens, 1 round, 1 thread: the CI smoke test"
    )
    parser.add_argument(
        "--lengths", type=int, nargs="+", help=f"tokens (default {' '.join(map(str, LENGTHS))})"
    )
    parser.add_argument("--rounds", type=int, nargs="+", help="rounds, one for all lengths or one per length")
    parser.add_argument("--models", action="store_true", help="only the ViT / MiniLM comparison")
    parser.add_argument("--model-rounds", type=int, default=None, help="rounds of --models (default 10)")
    parser.add_argument(
        "--memory-budget",
        type=float,
        default=10.0,
        help="GB: skip variants estimated to need more (default 10)",
    )
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's own default)")
    parser.add_argument(
        "--memory-variants",
        nargs="+",
        choices=VARIANTS,
        help="measure the peak memory of these only (default: all)",
    )
    parser.add_argument("--json", type=pathlib.Path, help="also write every result to this JSON file")
    parser.add_argument("--one-variant", nargs=2, metavar=("LENGTH", "VARIANT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    lengths = args.lengths or (QUICK_LENGTHS if args.quick else LENGTHS)
    if any(n < ROWS for n in lengths):
        parser.error(f"--lengths must be at least {ROWS} tokens, got {lengths}")
    rounds = args.rounds or [1 if args.quick else 5]
    if len(rounds) not in (1, len(lengths)) or min(rounds) < 1:
        parser.error(f"--rounds: one count of at least 1, or one per length ({len(lengths)}), got {rounds}")
    args.lengths, args.rounds = list(lengths), rounds * len(lengths) if len(rounds) == 1 else rounds
    if args.one_variant and args.one_variant[1] not in VARIANTS:
        parser.error(f"--one-variant: unknown variant {args.one_variant[1]!r}; known: {', '.join(VARIANTS)}")
    return args


def main(argv=None) -> None:
    import torch
    from bench_models import _quiet_transformers, header

    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse(argv)
    _quiet_transformers()
    budget = int(args.memory_budget * GB)
    if args.threads or args.quick:  # quick: one thread, the least disturbed on a shared CI machine
        torch.set_num_threads(args.threads or 1)
    if args.one_variant:
        with torch.no_grad():
            print(json.dumps(run_one_variant(int(args.one_variant[0]), args.one_variant[1])))
        return
    info = header(argv, args.rounds[0])
    info["command"] = info["command"].replace("bench_models.py", "bench_long.py")
    print("# Long sequences: lazy capture against eager capture (CPU)\n")
    print(f"- date: {info['date']}\n- machine: {info['machine']}; torch threads: {info['torch_threads']}")
    print(f"- versions: {', '.join(f'{k} {v}' for k, v in info['versions'].items())}")
    print(f"- command: `{info['command']}`\n- memory budget: {args.memory_budget:g} GB", flush=True)
    results = {"header": info, "lengths": {}}
    with torch.no_grad():
        if not args.models:
            model = build_llama()
            verdicts = []
            for length, rounds in zip(args.lengths, args.rounds, strict=True):
                shapes = check_llama(model, length)
                timing = time_length(model, length, rounds, budget)
                gc.collect()
                keys = args.memory_variants or VARIANTS
                memory = memory_length(length, budget, model if args.quick else None, keys, args.threads)
                print_length(length, timing, memory)
                verdicts += llama_verdicts(length, timing, memory)
                results["lengths"][str(length)] = {"shapes": shapes, "timing": timing, "memory": memory}
            results["targets"] = verdicts
            print_verdicts(verdicts)
        if args.models or args.quick:
            ids = QUICK_MODEL_IDS if args.quick else MODEL_IDS
            results["models"] = model_section(ids, args.model_rounds or (1 if args.quick else 10))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))
        print(f"\nWrote {args.json}")


if __name__ == "__main__":
    main()
