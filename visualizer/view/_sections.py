"""Encoder self, decoder self and cross attention: the sections of an encoder-decoder capture.

>>> sections(maps)                 # an AttentionMaps of a BART, T5 or nn.Transformer
[('Encoder self', [0, 1]), ('Decoder self', [2, 4]), ('Cross', [3, 5])]
>>> sections(plain)                # one stack (plain maps declare no roles): None
>>> keep_layers(sections(maps), layers=[0, 3], count=6)
[('Encoder self', [0]), ('Cross', [3])]

Only what the maps declare counts (``LayerInfo.role`` and ``.kind``): a model with one
stack, or plain maps, has no sections. Indices are positions among all captured layers.
"""

from __future__ import annotations

from visualizer._validate import indices

__all__ = ["SECTION_NAMES", "keep_layers", "sections"]

SECTION_NAMES = ("Encoder self", "Decoder self", "Cross")


def sections(attentions) -> list[tuple[str, list[int]]] | None:
    """``[(name, layer positions), ...]`` for an encoder-decoder ``AttentionMaps``; None otherwise."""
    infos = attentions.infos
    if not any(info.kind == "cross" and info.role == "decoder" for info in infos):
        return None
    groups = {name: [] for name in SECTION_NAMES}
    for position, info in enumerate(infos):
        if info.kind == "cross":
            groups["Cross"].append(position)
        elif info.role == "decoder":
            groups["Decoder self"].append(position)
        else:
            groups["Encoder self"].append(position)
    return [(name, found) for name, found in groups.items() if found]


def keep_layers(groups, layers, count: int, argument: str = "layers") -> list[tuple[str, list[int]]]:
    """The sections with only the ``layers`` selected (None: all), in model order; empty ones dropped."""
    chosen = set(indices(layers, count, argument, "layer"))
    kept = [(name, [i for i in found if i in chosen]) for name, found in groups]
    return [(name, found) for name, found in kept if found]
