"""The capture core: the bytecode rewrite, the records store, and ``get_local``.

Pure Python plus the ``bytecode`` package: nothing here imports torch, numpy or any
framework. Its clients (``capture_attention`` and the adapters) use only what this
package exports, never a private name of its modules:

- :class:`GetLocal` and the global :data:`get_local`: ``captures()`` and ``capture_of(obj)``
  describe what is captured (:class:`CaptureInfo`); ``open_tap(obj, variable, on_record,
  on_missing)`` opens a :class:`Tap` that receives raw values apart from the user's cache;
  ``configure``, ``activate``, ``reset`` and the rest are the user's API;
- :func:`describe`, :func:`resolve` and :func:`wrapped_chain`, how a target is found and named;
- the version flags :data:`PY312` and :data:`PY313`.
"""

from visualizer._core.captured import Tap
from visualizer._core.get_local import CaptureInfo, GetLocal, get_local
from visualizer._core.targets import describe, resolve, wrapped_chain
from visualizer._core.versions import PY312, PY313

__all__ = [
    "PY312",
    "PY313",
    "CaptureInfo",
    "GetLocal",
    "Tap",
    "describe",
    "get_local",
    "resolve",
    "wrapped_chain",
]
