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
    # Capturing attention from real models: tensors, timm ViTs, Hugging Face encoders; onnx
    # reads the offline DINOv2 weights (see weights.txt), tqdm draws the CLI's progress bar.
    "models": [
        "torch>=2.1",
        "torchvision>=0.16",
        "timm>=1.0",
        "transformers>=4.40",
        "numpy>=1.24",
        "onnx>=1.15",
        "tqdm>=4.60",
    ],
    # Figures; scikit-image ships the sample photo "chelsea".
    "plot": ["matplotlib>=3.7", "numpy>=1.24", "scikit-image>=0.21"],
    # The test suite: the browser tests drive Chromium over its DevTools websocket, and the
    # notebooks run headless through nbclient and an IPython kernel.
    "test": ["pytest>=7.4", "websocket-client>=1.6", "nbclient>=0.9", "nbformat>=5.9", "ipykernel>=6.25"],
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
    # The interactive view's templates, scripts and styles.
    package_data={"visualizer.view": ["static/*"]},
    entry_points={"console_scripts": ["transformer-visualizer = visualizer.cli:main"]},
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
