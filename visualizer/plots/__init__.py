"""Matplotlib figures of attention: heads, layers, tokens, image overlays, rollout, flow, distance.

>>> from visualizer.plots import plot_heads, plot_cls_attention
>>> fig = plot_heads(maps[3])                          # (batch, heads, T, T): every head + mean
>>> fig = plot_cls_attention(image, maps)              # CLS attention over the image, per layer
>>> fig = plot_relevance(explain(vit, pixels, 207), image)   # what drove class 207, over the image
>>> fig.savefig("heads.png")

Every function returns a ``matplotlib.figure.Figure`` made without pyplot (nothing is
shown by itself, nothing piles up in pyplot, any backend works) and never calls
``plt.show()``. Single-panel plots take ``ax=`` to draw into your own figure. Maps may be
numpy arrays or torch tensors, with or without the batch axis (``batch=0`` picks the
item), and every plot takes ``cmap``, ``vmin``/``vmax`` and ``title``; every heatmap and
overlay takes ``scale=`` ("linear", "sqrt", "log"), through one colour norm, starting at 0.
Matrix plots default to ``scale=None``: "sqrt" up to the 99.5th percentile of the weights
for maps with more than 64 keys (a ViT's 197 or 257 tokens: on a linear scale nearly every
cell is the bottom colour), "linear" below; the colorbar ends in an arrow when weights lie
above its top. Axes show at most 6 whole-number ticks. matplotlib is imported on the first
call, not with this package.

Plots of many layers (``plot_layers``, ``plot_cls_attention``, ``plot_rollout``,
``plot_attention_distance``, ``plot_attention_flow``) take an ``AttentionMaps`` and read
what its capture declared: captions and depths from ``maps.infos``, the flow's columns
from ``maps.structured()`` (encoder-decoder or single stack). Layers declared with windows
(Swin) or channels (XCiT) are refused with a LayoutError; ``maps.scatter(name)`` puts one
windowed layer on the token grid, as a plain map any plot draws.

``plot_head_effects`` draws what :func:`visualizer.head_effects` measured: how much
ablating each head changed a metric. ``plot_relevance`` draws what :func:`visualizer.explain`
returns: the scores over the image's patches (on the patch grid it declared) or along the
text, diverging colours centred at 0 when a score is negative; ``plot_faithfulness`` the
curves of :func:`visualizer.faithfulness`.
"""

from visualizer.plots._effects import plot_head_effects
from visualizer.plots._flow import plot_attention_distance, plot_attention_flow
from visualizer.plots._images import plot_cls_attention, plot_grid_to_grid, plot_rollout
from visualizer.plots._matrix import plot_head, plot_head_grid, plot_heads, plot_layers
from visualizer.plots._relevance import plot_faithfulness, plot_relevance
from visualizer.plots._text import plot_token_heatmap

__all__ = [
    "plot_attention_distance",
    "plot_attention_flow",
    "plot_cls_attention",
    "plot_faithfulness",
    "plot_grid_to_grid",
    "plot_head",
    "plot_head_effects",
    "plot_head_grid",
    "plot_heads",
    "plot_layers",
    "plot_relevance",
    "plot_rollout",
    "plot_token_heatmap",
]
