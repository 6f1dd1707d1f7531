"""Load peer tools for side-by-side benchmarks without letting them touch the environment.

``anycapture`` 0.1.4's wheel ships a whole forked ``timm`` package next to its own: a
plain ``pip install anycapture`` overwrites the installed timm. So it is installed with
``--no-deps --target benchmarks/.peers`` and loaded from its files, never through
``sys.path``.
"""

from __future__ import annotations

import importlib.util
import pathlib
import subprocess
import sys

PEERS = pathlib.Path(__file__).resolve().parent / ".peers"
ANYCAPTURE = "anycapture==0.1.4"


def load_anycapture():
    """The ``anycapture`` module, installed into benchmarks/.peers on first use."""
    package = PEERS / "anycapture"
    if not (package / "__init__.py").exists():
        command = [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--target",
            str(PEERS),
            ANYCAPTURE,
        ]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"could not install {ANYCAPTURE} into {PEERS}: {result.stderr.strip()[-500:]}")
    spec = importlib.util.spec_from_file_location(
        "anycapture", package / "__init__.py", submodule_search_locations=[str(package)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["anycapture"] = module  # its relative import needs the package registered
    spec.loader.exec_module(module)
    return module
