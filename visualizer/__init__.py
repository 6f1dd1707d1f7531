"""transformer-visualizer: see inside PyTorch Transformers.

``get_local`` records a function's local variables, usually attention maps, every time
it returns::

    from visualizer import get_local
    get_local.activate()
    model(x)                                   # Attention.forward has @get_local("attn")
    get_local.cache["Attention.forward"]       # one map per call

Importing this package imports neither torch, timm, transformers nor matplotlib.
"""

from visualizer._captured import CaptureWarning
from visualizer._get_local import get_local

__version__ = "0.1.0"

__all__ = ["CaptureWarning", "__version__", "get_local"]
