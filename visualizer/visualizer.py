"""The original tool's import path: ``from visualizer.visualizer import get_local``.

People who cloned the original Visualizer repository into their project import
``get_local`` from its module ``visualizer/visualizer.py``; this module keeps that line
working. It is the same object as ``visualizer.get_local``. Nothing heavy is imported.
"""

from visualizer._core import get_local

__all__ = ["get_local"]
