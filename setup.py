"""Packaging for transformer-visualizer; the import name is ``visualizer``.

The distribution is not called ``visualizer``: that name on the package index belongs to
an unrelated project, and installing it breaks ``from visualizer import get_local``.
Exact versions known to work together are in constraints.txt.
"""

import pathlib
import re

from setuptools import find_packages, setup

HERE = pathlib.Path(__file__).parent
VERSION = re.search(r'__version__ = "([^"]+)"', (HERE / "visualizer" / "__init__.py").read_text()).group(1)

EXTRAS = {
    # Capturing attention from real models: tensors, timm ViTs, Hugging Face encoders.
    "models": ["torch>=2.1", "torchvision>=0.16", "timm>=1.0", "transformers>=4.40", "numpy>=1.24"],
    # Figures.
    "plot": ["matplotlib>=3.7", "numpy>=1.24"],
    # The test suite.
    "test": ["pytest>=7.4"],
}
EXTRAS["all"] = sorted({requirement for group in EXTRAS.values() for requirement in group})

setup(
    name="transformer-visualizer",
    version=VERSION,
    description="See inside PyTorch Transformers: record attention maps and other local variables",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    packages=find_packages(include=["visualizer", "visualizer.*"]),
    python_requires=">=3.11",
    # The rewrite follows bytecode's abstract instructions closely; 0.19.1 is what is tested.
    install_requires=["bytecode>=0.19.1,<0.20"],
    extras_require=EXTRAS,
    classifiers=[
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Programming Language :: Python :: 3.13",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
        "Topic :: Scientific/Engineering :: Visualization",
    ],
)
