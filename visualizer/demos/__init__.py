"""Small models trained here, in seconds, whose attention you can check by eye.

>>> from visualizer.demos import train_copy_task, diagonal_mass
>>> task = train_copy_task(seed=0)                     # a few seconds on 2 CPU cores
>>> src = task.held_out(64)                            # (64, 10) token ids
>>> diagonal_mass(task.cross_attention(src))           # (64, 2, 10, 10) maps: about 0.99
0.99...
>>> from visualizer.demos import load_induction_demo
>>> demo = load_induction_demo(seed=0)                 # a small GPT-2, trained once, then cached
>>> demo.scores(demo.sequences(64))["previous_token"][0]   # (heads,): a previous-token head

Three of them have evidence known exactly, so relevance methods can be scored against it
(``ground_truth_scores(method)``: the pointing game, Chefer et al.'s segmentation scores,
faithfulness AUCs; ``benchmarks/relevance_table.py`` makes the table):

>>> from visualizer.demos import load_keyword_demo, load_shapes_demo
>>> keywords = load_keyword_demo(seed=0)               # a tiny BERT: one keyword decides the label
>>> shapes = load_shapes_demo(seed=0)                  # a tiny ViT: the shape of the one red object
>>> shapes.ground_truth_scores("attnlrp")["pointing_game"]    # the top patch is on the object
0.99...

Importing this package imports no torch; a demo module is imported on first use.
"""

import importlib

_EXPORTS = {
    "CopyTask": "copy_task",
    "CopyTaskSettings": "copy_task",
    "CopyTransformer": "copy_task",
    "diagonal_mass": "copy_task",
    "train_copy_task": "copy_task",
    "InductionDemo": "induction",
    "InductionSettings": "induction",
    "induction_score": "induction",
    "load_induction_demo": "induction",
    "previous_token_score": "induction",
    "train_induction": "induction",
    "vocabulary": "induction",
    "KeywordDemo": "keywords",
    "KeywordSettings": "keywords",
    "Sentences": "keywords",
    "load_keyword_demo": "keywords",
    "train_keywords": "keywords",
    "ShapesDemo": "shapes",
    "ShapesSettings": "shapes",
    "load_shapes_demo": "shapes",
    "train_shapes": "shapes",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    # Lazy, so `import visualizer.demos` stays cheap: the demos need torch, the package does not.
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
