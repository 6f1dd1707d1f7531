"""What adapters share to find an edit point: norms that mix the heads before the projection.

A norm over all heads between an attention's kernel and its output projection (timm's
``scale_norm``, BitNet's ``attn_sub_norm``) makes one head's slice of the projection's input
depend on every head, so an editor there cannot change one head's output alone. It is read
from the class's forward: a child whose name says norm, called after the softmax or the
kernel (or transformers' attention function) and before the projection, whose weight spans
all of the projection's inputs. A norm per head (differential attention's ``sub_norm``)
keeps heads apart and does not count.
"""

from __future__ import annotations

import functools
import inspect

__all__ = ["forward_source", "norms_between"]

#: What marks the attention itself in a forward's source.
KERNELS = ("scaled_dot_product_attention", "softmax", "attention_interface(")


def norms_between(module, attribute: str) -> str:
    """The norms over all heads ``module`` applies between its attention and ``self.<attribute>(``,
    named (``"norm (LayerNorm)"``), or ''."""
    source = forward_source(type(module))
    projection = getattr(module, attribute, None)
    weight = getattr(projection, "weight", None)
    if not source or weight is None:
        return ""
    width = projection.in_features if hasattr(projection, "in_features") else weight.shape[0]
    kernel = max(source.rfind(marker) for marker in KERNELS)
    end = source.find(f"self.{attribute}(")
    found = []
    for name, child in module.named_children():
        norm_weight = getattr(child, "weight", None)
        position = source.find(f"self.{name}(")
        if (
            "norm" in name
            and kernel < position < end
            and (norm_weight is None or norm_weight.numel() == width)
            and type(child).__name__ != "Identity"
        ):
            found.append(f"{name} ({type(child).__name__})")
    return ", ".join(found)


@functools.cache
def forward_source(cls) -> str:
    """The source of ``cls.forward``, read once per class; '' where it cannot be read."""
    try:
        return inspect.getsource(cls.forward)
    except (OSError, TypeError):
        return ""
