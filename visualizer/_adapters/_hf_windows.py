"""The window layout of transformers' Swin-family layers (Swin, Swinv2, DonutSwin, MaskFormerSwin, CLAP).

>>> layers = WindowLayers([model]); layers.install()   # hooks every window layer of the model
>>> layers.current()                      # inside a window layer's forward, in this thread
Windows(window=(4, 4), grid=(2, 2), shift=(2, 2), tokens=(8, 8))
>>> layers.close()

A window layer (``SwinLayer`` and its copies) gets ``input_dimensions`` (H, W) and, unless
``always_partition``, first calls its own ``set_shift_and_window_size`` (which turns the
shift off and shrinks the window when the input is not larger than it); it then pads the
grid bottom/right to a multiple of ``window_size``, rolls it by ``-shift_size`` and cuts it
into windows, image after image. A forward pre-hook makes the same call the layer is about
to make (it is idempotent) and reads what the layer will use, so a map recorded inside it
is (batch x windows, heads, window^2, window^2) with that :class:`Windows` layout.
"""

from __future__ import annotations

import inspect
import threading

from visualizer._structure import Windows

__all__ = ["WindowLayers", "is_window_layer", "window_layers"]


def is_window_layer(module) -> bool:
    """Whether ``module`` partitions its input into (shifted) windows as ``SwinLayer`` does."""
    return (
        isinstance(getattr(module, "window_size", None), int)
        and isinstance(getattr(module, "shift_size", None), int)
        and callable(getattr(module, "maybe_pad", None))
        and "input_dimensions" in _parameters(type(module))
    )


def window_layers(model) -> list:
    """``[(path, module), ...]`` of the window layers of ``model``, in model order."""
    return [(path, module) for path, module in model.named_modules() if is_window_layer(module)]


def _parameters(cls) -> tuple:
    try:
        return tuple(inspect.signature(cls.forward).parameters)
    except (TypeError, ValueError):
        return ()


def layout_of(module, args, kwargs) -> Windows | None:
    """The windows a window layer is about to attend in, from its forward's arguments."""
    names = _parameters(type(module))[1:]
    bound = dict(zip(names, args))
    bound.update(kwargs)
    dims = bound.get("input_dimensions")
    if dims is None or len(dims) != 2:
        return None
    height, width = int(dims[0]), int(dims[1])
    if not bound.get("always_partition", False) and callable(
        getattr(module, "set_shift_and_window_size", None)
    ):
        module.set_shift_and_window_size((height, width))  # what forward does first; idempotent
    window, shift = int(module.window_size), int(module.shift_size)
    if window < 1:
        return None
    grid = (-(-height // window), -(-width // window))
    return Windows(window=(window, window), grid=grid, shift=(shift, shift), tokens=(height, width))


class WindowLayers:
    """Forward hooks on every window layer of a model: the layout of the innermost running one."""

    def __init__(self, models) -> None:
        self.local = threading.local()
        self.handles = []
        self.models = list(models)

    def install(self) -> None:
        """Hook the window layers (after any other hook on them, so their layout outlives those)."""
        for model in self.models:
            for _, module in window_layers(model):
                self.handles.append(module.register_forward_pre_hook(self._enter, with_kwargs=True))
                self.handles.append(module.register_forward_hook(self._leave, always_call=True))

    def _stack(self) -> list:
        stack = getattr(self.local, "stack", None)
        if stack is None:
            stack = self.local.stack = []
        return stack

    def _enter(self, module, args, kwargs):
        self._stack().append((module, layout_of(module, args, kwargs)))

    def _leave(self, module, args, output):
        stack = self._stack()
        while stack:
            if stack.pop()[0] is module:
                break

    def current(self) -> Windows | None:
        """The layout of the innermost window layer running in this thread, or None."""
        stack = self._stack()
        return stack[-1][1] if stack else None

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()
