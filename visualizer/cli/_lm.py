"""``transformer-visualizer lm``: a causal language model's attention over a prompt and what it generates.

    python -m visualizer lm                                  # the offline induction-heads demo
    python -m visualizer lm --generate 20                    # ... and 20 tokens it generates
    python -m visualizer lm "The cat sat on the mat." --model path/to/gpt2 --generate 16

With no ``--model`` the model is the induction-heads demo (a 2-layer GPT-2 trained here once
and cached, :func:`visualizer.demos.load_induction_demo`) and the prompt is one of its
held-out sequences, a random block of words repeated; a prompt of words from its vocabulary
can be given instead. With ``--model`` (a transformers causal LM name or a local folder) the
prompt is text. Per prompt it writes ``tokens.png`` (the mean over heads of ``--layer``,
capped at :data:`FIGURE_TOKENS` tokens, labels prettified), ``heads.png``, the model view,
the text view, ``generation.png`` (with ``--generate``: the stitched map of the whole run)
and ``stats.json``. For the demo it also writes ``head_effects.png``, how much zero-ablating
each head raises the copy loss on its held-out sequences, and ``stats.json`` says what
ablating the heads its attention calls induction heads does to the copy, against the others.
"""

from __future__ import annotations

from pathlib import Path

from visualizer.cli._common import UsageError, check_index, check_indices, progress
from visualizer.cli._explain import check_method, explain_input, next_token
from visualizer.cli._outputs import Outputs

__all__ = ["FIGURE_TOKENS", "MAX_GENERATE", "SAMPLE_PROMPT", "figure_labels", "run"]

FIGURE_TOKENS = 64  # the token heatmap and the heads figure: the last 64 tokens, labels readable
GENERATION_TOKENS = 512  # the stitched generation figure: at most this many tokens a side
MAX_GENERATE = 4096
SAMPLE_PROMPT = "The quick brown fox jumps over the lazy dog. The quick brown fox"
DEMO_LABEL = "induction-heads demo (2-layer GPT-2, trained here)"


def run(args, outputs: Outputs) -> list[Path]:
    """Write figures, views and statistics for each prompt; returns the files written."""
    prompts = [text for text in args.text]
    for i, text in enumerate(prompts, 1):
        if not text.strip():
            raise UsageError(f"prompt {i} is empty")
    if args.generate < 0 or args.generate > MAX_GENERATE:
        raise UsageError(f"--generate {args.generate}: give a number of tokens from 0 to {MAX_GENERATE}")
    if args.model is None and args.random_weights:
        raise UsageError("--random-weights goes with --model NAME")
    from visualizer.models import WeightsError
    from visualizer.models._packages import require_frameworks

    try:
        require_frameworks("the lm command", ("torch", "transformers"))
    except WeightsError as exc:
        raise UsageError(str(exc)) from None
    method = check_method(args.explain)
    from visualizer.cli._vit import _device

    device = _device(args.device)
    source = _Demo(prompts, args.generate) if args.model is None else _Model(args, prompts or [SAMPLE_PROMPT])
    source.model.to(device)
    import torch

    from visualizer import capture_attention

    limit = _positions(source.model)
    for i, ids in enumerate(progress(source.inputs, "prompts"), 1):
        if limit is not None and ids.shape[1] + args.generate > limit:
            raise UsageError(
                f"prompt {i} has {ids.shape[1]} tokens; with --generate {args.generate} that is more than "
                f"the model's {limit} positions"
            )
        with torch.no_grad(), capture_attention(source.model, device="cpu") as maps:
            plan = _plan(source.model, maps.selected, args, source.label)
            ids = ids.to(device)
            if args.generate:
                out = source.model.generate(
                    ids,
                    attention_mask=torch.ones_like(ids),
                    max_new_tokens=args.generate,
                    min_new_tokens=args.generate,
                    do_sample=False,
                    pad_token_id=source.pad_id,
                )
                ids = out
            else:
                source.model(ids)
        folder = outputs.folder(f"prompt-{i}")
        prompt = source.inputs[i - 1].to(device)
        explained = None
        if method is not None:  # the prompt's next token, as the model predicts it before generating
            with torch.no_grad():
                target = next_token(source.model(prompt).logits, lambda token: source.tokens([token])[0])
            labels = figure_labels(source.tokens(prompt[0].tolist()), source.scheme)
            explained = explain_input(
                outputs, folder, source.model, prompt, target, method, label=source.label, tokens=labels
            )
        _write(outputs, folder, maps, ids[0].tolist(), prompt.shape[1], source, plan, explained)
        outputs.done(folder)
    return outputs.written


def _positions(model) -> int | None:
    config = getattr(model, "config", None)
    for name in ("n_positions", "max_position_embeddings"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _plan(model, infos, args, label: str) -> dict:
    from visualizer.cli._common import check_token_layers, heads_of

    check_token_layers(infos, label)
    count = len(infos)
    heads = heads_of(model, infos)
    return {
        "layers": check_indices(args.layers, count, "layer", "--layers"),
        "detail": check_index(args.layer, count, "layer", "--layer") if args.layer is not None else count - 1,
        "heads": check_indices(args.heads, heads, "head", "--heads") if heads is not None else None,
    }


def _write(
    outputs: Outputs, folder: Path, maps, ids: list[int], prompt_length: int, source, plan, explained
) -> None:
    from visualizer import AttentionMaps
    from visualizer.analysis import attention_stats, top_k_pairs
    from visualizer.plots import plot_head, plot_head_grid, plot_token_heatmap
    from visualizer.view import model_view, text_view

    layers, detail, heads = plan["layers"], plan["detail"], plan["heads"]
    generated = len(ids) - prompt_length
    # With a KV cache the last generated token is never fed back: the maps cover the tokens before it.
    if generated:  # each layer's calls stitched into one map of the run
        layer_maps = AttentionMaps.from_arrays({path: maps.generation(path) for path in maps.names})
    else:
        layer_maps = maps
    total = prompt_length + max(generated - 1, 0)
    raw = source.tokens(ids[:total])
    labels = figure_labels(raw, source.scheme)
    label = source.label
    start = max(0, total - FIGURE_TOKENS)
    note = f" (last {total - start} of {total} tokens)" if start else ""
    window = _window(layer_maps, detail, start, total)
    outputs.figure(
        folder,
        "tokens.png",
        plot_token_heatmap(
            window, labels[start:], scale="sqrt", title=f"{label}: layer {detail}, mean of heads{note}"
        ),
    )
    outputs.figure(
        folder,
        "heads.png",
        plot_head_grid(
            window, labels[start:], heads=heads, scale="sqrt", title=f"{label}: layer {detail}, heads{note}"
        ),
    )
    if generated:
        first = max(0, total - GENERATION_TOKENS)
        stitched = _window(layer_maps, detail, first, total)
        figure = plot_head(
            stitched,
            head=None,
            tokens=labels[first:] if total - first <= FIGURE_TOKENS else None,
            scale="sqrt",
            figsize=(7.5, 7.0),
            title=f"{label}: layer {detail} over the whole run, mean of heads\n"
            f"({prompt_length} prompt + {generated} generated tokens"
            + (f", the last {total - first} shown)" if first else ")"),
        )
        if prompt_length > first:
            for ax in figure.axes[:1]:
                ax.axhline(prompt_length - first - 0.5, color="#7fdbff", lw=0.8, ls="--")
        outputs.figure(folder, "generation.png", figure)
    outputs.text(
        folder,
        "model_view.html",
        model_view(
            layer_maps,
            raw,
            layers=layers,
            include_heads=heads,
            scheme=source.scheme,
            title=f"{label}: every layer and head",
        ).html,
    )
    outputs.text(
        folder,
        "text_view.html",
        text_view(
            layer_maps,
            source.tokens(ids) if generated else raw,  # the last generated token too, which has no row
            layers=layers,
            heads=heads,
            layer=detail if detail in layers else None,
            prompt_length=prompt_length if generated else None,
            scheme=source.scheme,
            title=f"{label}: text view",
        ).html,
    )
    strongest = top_k_pairs(layer_maps, 10, layer=detail, item=0)
    stats = {
        "model": label,
        "prompt_tokens": prompt_length,
        "generated_tokens": generated,
        "tokens": source.tokens(ids),
        "text": source.text(ids),
        "entropy_per_head": [_entropy(layer_maps, i) for i in layers],
        f"top_pairs_layer_{detail}": [
            {"query": raw[q], "key": raw[k], "query_index": q, "key_index": k, "weight": round(w, 4)}
            for q, k, w in strongest
        ],
        **source.extra_stats(ids, prompt_length),
        **attention_stats(layer_maps),
        **({"relevance": explained} if explained is not None else {}),
    }
    outputs.json(folder, "stats.json", stats)
    for name, figure in source.extra_figures():
        outputs.figure(folder, name, figure)


def _entropy(layer_maps, i: int) -> list[float]:
    from visualizer.analysis import entropy

    return entropy(layer_maps, layer=i)[0].round(4).tolist()


def _window(layer_maps, layer: int, start: int, stop: int):
    """One layer's (batch, heads, n, n) map over tokens ``start:stop``: only those rows are read."""
    return layer_maps.read(layer, rows=slice(start, stop))[..., start:stop]


def figure_labels(tokens: list[str], scheme: str | None = None) -> list[str]:
    """Tick labels for ``tokens``: markers read back into text, whitespace made visible.

    >>> figure_labels(["The", "Ġcat", "Ċ"])
    ['The', 'cat', '\\n']
    """
    from visualizer.view._tokens import pretty_tokens

    labels = []
    for token in pretty_tokens(tokens, scheme):
        text = token.text
        if not text.strip():
            text = text.replace(" ", "\u2423").replace("\n", "\\n").replace("\t", "\\t") or "\u2205"
        labels.append(text if len(text) <= 16 else text[:15] + "\u2026")
    return labels


class _Demo:
    """The induction-heads demo: its model, and its example sequence (or prompts of its words).

    The example is chosen by a rule, not by luck (:meth:`InductionDemo.example`): the first
    held-out sequence whose copy the model knows by a clear logit margin. With ``--generate N``
    the default prompt is that sequence cut ``N`` tokens short (keeping at least the block and
    the first token of its copy), so that what the model generates can be checked against the
    copy it should finish; ``stats.json`` says how often the model copies held-out sequences.
    """

    scheme = "words"  # each token is a word

    def __init__(self, prompts: list[str], generate: int) -> None:
        from visualizer.demos import load_induction_demo, vocabulary

        self.ids = {name: i for i, name in enumerate(vocabulary())}
        encoded = [self._encode(text, i) for i, text in enumerate(prompts, 1)]  # before the demo loads
        self.demo = load_induction_demo()
        self.model = self.demo.model
        self.label = DEMO_LABEL
        self.pad_id = self.demo.settings.bos
        self.example = self.demo.example()
        self.sequence = self.example.ids
        self._ablated: dict | None = None
        if prompts:
            self.inputs = encoded
        else:
            block = (self.sequence.shape[1] - 1) // 2
            keep = max(block + 2, self.sequence.shape[1] - generate)
            self.inputs = [self.sequence[:, :keep]]

    def _encode(self, text: str, number: int):
        import torch

        words = text.split()
        unknown = [word for word in words if word not in self.ids]
        if unknown:
            known = ", ".join(list(self.ids)[:8])
            raise UsageError(
                f"prompt {number}: the demo's vocabulary has no {unknown[0]!r}; its words are {known}, ... "
                "(see visualizer.demos.induction.WORDS), or give --model for a text prompt"
            )
        return torch.tensor([[self.ids[word] for word in words]])

    def tokens(self, ids: list[int]) -> list[str]:
        import torch

        return self.demo.tokens(torch.tensor(ids, dtype=torch.long))

    def text(self, ids: list[int]) -> str:
        return " ".join(self.tokens(ids))

    def extra_stats(self, ids: list[int], prompt_length: int) -> dict:
        """The demo's scores on its example, how it was chosen, and whether a generation finished the copy."""
        from visualizer.demos.induction import EXAMPLE_MARGIN

        scores = self.demo.scores(self.sequence)
        stats = {
            "example": {
                "rule": "the first of demo.sequences(256) whose copy the model knows by a logit margin of "
                f"at least {EXAMPLE_MARGIN:g} (teacher forced), else the one with the largest margin",
                "index": self.example.index,
                "copy_margin": round(self.example.margin, 4),
                "held_out_exact_copy_rate": round(self.example.copy_rate, 4),
            },
            "scores_on": self.demo.tokens(self.sequence[0]),
            "previous_token_score": scores["previous_token"].round(4).tolist(),
            "induction_score": scores["induction"].round(4).tolist(),
        }
        stats.update(self._ablations())
        reference = self.sequence[0].tolist()
        if ids[:prompt_length] == reference[:prompt_length] and len(ids) > prompt_length:
            length = min(len(ids), len(reference))
            stats["generated_matches_the_copy"] = ids[prompt_length:length] == reference[prompt_length:length]
        return stats

    def _ablations(self) -> dict:
        """What zero-ablating heads does to the copy (once per run: the same held-out sequences)."""
        if self._ablated is None:
            from visualizer import ablate

            held_out = self.demo.sequences(256)
            self._effects = self.demo.head_effects(held_out)
            induction = self.demo.induction_heads(held_out)
            others = [head for head in range(self.demo.settings.heads) if head not in induction]
            last = self.demo.settings.layers - 1
            accuracy = {"clean": self.demo.copy_accuracy(held_out)}
            for name, heads in (("induction_heads_ablated", induction), ("other_heads_ablated", others)):
                if heads:
                    with ablate(self.model, {last: heads}):
                        accuracy[name] = self.demo.copy_accuracy(held_out)
            self._ablated = {
                "head_effects": {
                    "metric": "copy loss (cross-entropy on the second copy, teacher forced) when the head "
                    "alone is zero-ablated, minus the clean copy loss; demo.sequences(256)",
                    "layers": list(self._effects.layers),
                    "clean_copy_loss": round(self._effects.clean, 4),
                    "copy_loss_change": self._effects.values.round(4).tolist(),
                },
                "copy_accuracy": {
                    "rule": "teacher-forced next-token accuracy on the second copy of demo.sequences(256); "
                    f"induction heads: layer {last}'s heads with an induction score of at least 0.5",
                    "induction_heads": induction,
                    **{name: round(value, 4) for name, value in accuracy.items()},
                },
            }
        return self._ablated

    def extra_figures(self) -> list:
        from visualizer.plots import plot_head_effects

        self._ablations()
        return [
            (
                "head_effects.png",
                plot_head_effects(
                    self._effects,
                    metric="copy loss",
                    title=f"{self.label}\nzero-ablating one head at a time: the copy loss rises",
                ),
            )
        ]


class _Model:
    """A transformers causal LM from ``--model``, with its tokenizer."""

    pad_id: int | None
    scheme = None  # read from the tokenizer's markers

    def __init__(self, args, prompts: list[str]) -> None:
        from visualizer.models import WeightsError, load_causal_lm

        try:
            self.model, self.tokenizer = load_causal_lm(args.model, pretrained=not args.random_weights)
        except WeightsError as exc:
            raise UsageError(f"unknown or unavailable model {args.model!r}: {exc}") from None
        name = Path(args.model).name if Path(args.model).expanduser().exists() else args.model
        self.label = f"{name} ({'random weights' if args.random_weights else 'pretrained'})"
        self.inputs = [self.tokenizer(text, return_tensors="pt")["input_ids"] for text in prompts]
        self.pad_id = self.tokenizer.pad_token_id
        if self.pad_id is None:
            self.pad_id = self.tokenizer.eos_token_id

    def tokens(self, ids: list[int]) -> list[str]:
        return self.tokenizer.convert_ids_to_tokens(ids)

    def text(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids)

    def extra_stats(self, ids: list[int], prompt_length: int) -> dict:
        return {}

    def extra_figures(self) -> list:
        return []
