"""The one colour map of attention, shared by every figure and the image view.

>>> ATTENTION_CMAP
'inferno'
>>> colormap_table("inferno", steps=3)          # what the image view gets: (steps, 3) uint8 RGB
[[0, 0, 4], [188, 55, 84], [252, 255, 164]]

Why inferno: perceptually uniform and sequential (unlike turbo or jet, which invent edges),
readable in grey and by the colour-blind, and over a picture its dark low end dims the
patches that get little attention, so the overlay reads as light where attention falls.
Every plot takes ``cmap=`` to use another one, and so does ``image_view``.
"""

from __future__ import annotations

__all__ = ["ATTENTION_CMAP", "colormap_table"]

#: The default colour map of every attention heatmap, overlay and view.
ATTENTION_CMAP = "inferno"


def colormap_table(cmap=ATTENTION_CMAP, steps: int = 64) -> list[list[int]]:
    """``steps`` evenly spaced colours of a matplotlib colour map (a name or a Colormap), as 0..255 RGB."""
    try:
        import matplotlib
    except ImportError:
        raise ImportError(
            'the image view takes its colours from matplotlib: pip install -c constraints.txt -e ".[plot]"'
        ) from None
    if isinstance(cmap, str):
        if cmap not in matplotlib.colormaps:
            raise ValueError(
                f"cmap {cmap!r} is not a matplotlib colour map; e.g. {ATTENTION_CMAP!r}, 'viridis'"
            )
        cmap = matplotlib.colormaps[cmap]
    if not isinstance(cmap, matplotlib.colors.Colormap):
        raise TypeError(f"cmap must be a colour map name or a matplotlib Colormap, not {type(cmap).__name__}")
    return [[round(255 * c) for c in cmap(i / (steps - 1))[:3]] for i in range(steps)]
