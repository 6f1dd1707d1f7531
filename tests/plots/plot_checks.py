"""Structural checks for figures: panels, images, not blank, nothing outside the canvas."""

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def panels(fig):
    """Visible axes that are not colorbars."""
    return [ax for ax in fig.axes if ax.get_visible() and not hasattr(ax, "_colorbar")]


def colorbars(fig):
    return [ax for ax in fig.axes if hasattr(ax, "_colorbar")]


def render(fig) -> np.ndarray:
    """The figure rendered with Agg at a low dpi: (H, W, 3) uint8."""
    canvas = FigureCanvasAgg(fig)
    fig.set_dpi(40)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3]


def check_figure(fig, n_panels: int, n_colorbars: int | None = None, images_per_panel: int = 1):
    """A real, non-blank figure with the expected panels, each drawing images, all inside the canvas."""
    assert isinstance(fig, Figure)
    shown = panels(fig)
    assert len(shown) == n_panels, [ax.get_title() for ax in shown]
    for ax in shown:
        assert len(ax.images) >= images_per_panel, ax.get_title()
    if n_colorbars is not None:
        assert len(colorbars(fig)) == n_colorbars
    pixels = render(fig)
    assert pixels.std() > 10, "the rendered figure is (nearly) blank"
    renderer = fig.canvas.get_renderer()
    box, frame = fig.get_tightbbox(renderer), fig.bbox_inches
    slack = 0.05  # inches
    assert box.x0 >= -slack and box.y0 >= -slack, f"something sticks out of the figure: {box} vs {frame}"
    assert box.x1 <= frame.x1 + slack and box.y1 <= frame.y1 + slack, f"something sticks out: {box}"


def titles(fig):
    return [ax.get_title() for ax in panels(fig)]


def softmax_maps(rng, *shape):
    a = rng.random(shape) + 0.01
    return a / a.sum(-1, keepdims=True)
