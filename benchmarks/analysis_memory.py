"""Peak memory of the analyses on a lazy capture: read by rows (``layer=``) next to the whole maps.

    python benchmarks/analysis_memory.py            # 2048 tokens, 4 layers: about a minute
    python benchmarks/analysis_memory.py --quick    # 256 tokens: a few seconds

A tiny random Llama (sdpa, so the maps are rebuilt on demand) reads ``tokens`` tokens under
``capture_attention``. Then, each in its own fresh process, one of:

- ``measures``, read by rows: ``entropy(maps, layer=i)`` for every layer, ``top_k_pairs(maps,
  5, layer=-1, item=0)`` and ``attention_stats(maps)``, a block of query rows at a time;
- ``measures``, whole: the same on ``maps.stack()``, every layer built at once;
- ``rollout``: ``rollout(maps)`` (one layer at a time) next to ``rollout(maps.stack())``.

Each process reports how far its peak resident memory grew past what it held after the
capture (``ru_maxrss``), and the results of each pair are checked to agree. Compare the
ratios within one run; one layer's map is ``heads x tokens^2 x 4`` bytes, and rollout keeps
a few (tokens, tokens) float64 matrices whatever it reads.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys


def measure(mode: str, job: str, tokens: int, layers: int) -> dict:
    import resource

    import numpy as np
    import torch
    import transformers

    from visualizer import capture_attention
    from visualizer.analysis import attention_stats, entropy, rollout, top_k_pairs

    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=50,
        hidden_size=64,
        intermediate_size=64,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=tokens,
    )
    model = transformers.LlamaModel(config).eval()
    ids = torch.randint(0, 50, (1, tokens), generator=torch.Generator().manual_seed(1))
    with capture_attention(model) as maps, torch.no_grad():
        model(input_ids=ids)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    source = maps if mode == "rows" else maps.stack()
    out: dict = {}
    if job == "rollout":
        out["rollout_row"] = rollout(source)[0, -1, :8].tolist()
    elif mode == "rows":
        out["entropy"] = np.stack([entropy(maps, layer=i) for i in range(len(maps))]).tolist()
        out["pairs"] = [list(p[:2]) for p in top_k_pairs(maps, 5, layer=-1, item=0)]
        out["std"] = [entry["std"] for entry in attention_stats(maps)["layers"]]
    else:
        out["entropy"] = np.stack([entropy(source[i]) for i in range(len(maps))]).tolist()
        out["pairs"] = [list(p[:2]) for p in top_k_pairs(source[-1, 0], 5)]
        out["std"] = [entry["std"] for entry in attention_stats(list(source))["layers"]]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out["growth_mib"] = (peak - before) / 1024  # ru_maxrss is in KiB on Linux
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="256 tokens, 2 layers")
    parser.add_argument("--mode", choices=["rows", "whole"], help=argparse.SUPPRESS)
    parser.add_argument("--job", choices=["measures", "rollout"], help=argparse.SUPPRESS)
    parser.add_argument("--tokens", type=int, default=2048)
    parser.add_argument("--layers", type=int, default=4)
    args = parser.parse_args()
    tokens, layers = (256, 2) if args.quick else (args.tokens, args.layers)
    if args.mode:
        print(json.dumps(measure(args.mode, args.job, tokens, layers)))
        return
    import numpy as np

    layer_mib = 4 * tokens * tokens * 4 / 2**20
    print(f"{tokens} tokens, {layers} layers, one layer's map {layer_mib:.0f} MiB\n")
    print(
        "| analysis | read by rows / one layer (MiB) | whole maps (MiB) | whole / rows |\n|---|---|---|---|"
    )
    for job in ("measures", "rollout"):
        got = {}
        for mode in ("rows", "whole"):
            command = [sys.executable, __file__, "--mode", mode, "--job", job]
            command += ["--tokens", str(tokens), "--layers", str(layers)]
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            got[mode] = json.loads(done.stdout.strip().splitlines()[-1])
        rows, whole = got["rows"], got["whole"]
        for field in set(rows) - {"growth_mib", "pairs"}:
            np.testing.assert_allclose(rows[field], whole[field], rtol=1e-5, atol=1e-9, err_msg=field)
        assert rows.get("pairs") == whole.get("pairs")
        ratio = whole["growth_mib"] / max(rows["growth_mib"], 1e-9)
        print(f"| {job} | {rows['growth_mib']:.0f} | {whole['growth_mib']:.0f} | {ratio:.1f}x |")
    print("\nthe results of each pair agree")


if __name__ == "__main__":
    main()
