"""transformer-visualizer: see inside PyTorch Transformers.

``get_local`` records a function's local variables, usually attention maps, every time
it returns::

    from visualizer import get_local
    get_local.activate()
    model(x)                                   # Attention.forward has @get_local("attn")
    get_local.cache["Attention.forward"]       # one map per call

``capture_attention`` does it for a whole model, whatever its attention kernel::

    from visualizer import capture_attention
    with capture_attention(model) as maps:
        model(x)
    maps[0].shape                              # (batch, heads, queries, keys)

``survey`` counts attention measures per layer and head over a whole dataset (streamed,
resumable, and sharded under ``torchrun``)::

    from visualizer import survey
    result = survey(model, "photos/", batch_size=16)
    result.mean("distance")                    # (layers, heads)

``ablate`` tests what a map suggests: does the model need this head? ::

    from visualizer import ablate, head_effects
    with ablate(model, {"transformer.h.1.attn": [0, 3]}):   # zero two heads' outputs
        logits = model(ids).logits
    effects = head_effects(model, ids, metric)             # (layers, heads): one ablation each

``explain`` says which input tokens drove an output, exactly and in linear memory::

    from visualizer import explain
    relevance = explain(vit, images, target=207)           # Chefer et al.'s attention_grad
    relevance.scores.shape                                 # (batch, tokens)

Importing this package imports neither torch, timm, transformers nor matplotlib.
"""

from visualizer._capture import AttentionCapture, capture_attention
from visualizer._core import get_local
from visualizer._errors import (
    CaptureError,
    CaptureWarning,
    EditPointError,
    LayoutError,
    RewriteError,
    UsageError,
    WeightsError,
)
from visualizer._maps import AttentionMaps
from visualizer._structure import CHANNELS, TOKENS, Channels, LayerInfo, Tokens, Windows

__version__ = "0.5.0"

_LAZY = {
    "survey": "visualizer._survey",
    "SurveyResult": "visualizer._survey",
    **dict.fromkeys(
        (
            "ablate",
            "patch",
            "record_heads",
            "head_means",
            "head_effects",
            "HeadEffects",
            "HeadMeans",
            "HeadRecord",
        ),
        "visualizer.interventions",
    ),
    **dict.fromkeys(("explain", "faithfulness", "Relevance", "Faithfulness"), "visualizer.relevance"),
}


def __getattr__(name: str):
    """``survey``, the interventions (``ablate``, ``patch``, ``head_effects``, ...) and their
    results, imported on first use (they need numpy and torch)."""
    if name in _LAZY:
        import importlib

        try:
            module = importlib.import_module(_LAZY[name])
        except ModuleNotFoundError as error:
            raise ImportError(
                f"visualizer.{name} needs numpy and torch ({error.name} is not installed). "
                'Fix: pip install -c constraints.txt "transformer-visualizer[models]"'
            ) from error
        return getattr(module, name)
    raise AttributeError(f"module 'visualizer' has no attribute {name!r}")


__all__ = [
    "CHANNELS",
    "TOKENS",
    "AttentionCapture",
    "AttentionMaps",
    "CaptureError",
    "CaptureWarning",
    "EditPointError",
    "Faithfulness",
    "HeadEffects",
    "HeadMeans",
    "HeadRecord",
    "Channels",
    "LayerInfo",
    "LayoutError",
    "Relevance",
    "RewriteError",
    "SurveyResult",
    "Tokens",
    "UsageError",
    "WeightsError",
    "Windows",
    "__version__",
    "ablate",
    "capture_attention",
    "explain",
    "faithfulness",
    "get_local",
    "head_effects",
    "head_means",
    "patch",
    "record_heads",
    "survey",
]
