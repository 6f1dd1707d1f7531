"""Model adapters: each finds one framework's attention modules and records their weights.

Every adapter is an object behind the :class:`Adapter` protocol, kept as ``ADAPTER`` in
its own module of this package (found by :data:`REGISTRY`, most specific first: each adapter's
``order``):

- ``name``: how maps name their source (``LayerInfo.adapter``);
- ``framework``: the module it serves (``"transformers"``); the adapter is skipped unless
  that module is already imported, since no model of a framework exists before it is;
- ``supports``: one line for error messages;
- ``order``: where it comes among the adapters (a more specific adapter first: lower);
- ``find(model, modules, claimed, core) -> [Target | Refusal, ...]``: among ``modules``
  (``(path, module)`` pairs in model order, none inside a module another adapter claimed),
  the attention modules it records, each a :class:`Target` carrying the role, kind, block
  and layout the framework declares and a typed payload of the adapter's own; and the
  attention modules it knows but cannot record, each a :class:`Refusal` saying why;
- ``attach(targets, recorder, core) -> detach``: make those modules report each attention
  call as one :class:`~visualizer._adapters._events.AttentionCall` to ``recorder``
  (:class:`Recorder`); ``detach()`` undoes every change. A target whose ``lazy`` the capture
  set keeps its own kernel, and its event carries what defines the map instead of the map;
  ``find`` says in each target's ``eager_because`` why the map cannot be rebuilt from its
  kernel's inputs (None where it can);
- ``edit_point(target, modules) -> EditPoint | str``: where editors and gradient taps act on
  the target (its output projection and heads, :class:`~visualizer._adapters._events.EditPoint`;
  see ``_seam``), or why they cannot; ``modules`` is ``dict(model.named_modules())``.

``core`` is the :class:`~visualizer._core.GetLocal` the capture uses.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
import sys
from collections.abc import Callable, Sequence
from typing import Any, Generic, Protocol, TypeVar

from visualizer._adapters._events import EditPoint, Recorder
from visualizer._structure import TOKENS, Layout

__all__ = [
    "REGISTRY",
    "Adapter",
    "Recorder",
    "Refusal",
    "Target",
    "adapters",
    "attach",
    "block_of",
    "find_targets",
    "supported",
]


P = TypeVar("P")


@dataclasses.dataclass(eq=False)
class Target(Generic[P]):
    """One attention module (or one get_local function) an adapter records.

    ``name`` is its module path (a get_local key for a free function, whose ``module`` is
    None); ``role``, ``kind``, ``block`` and ``layout`` are what the framework declares
    (see :class:`visualizer._structure.LayerInfo`); ``layout`` may be refined per call
    (windows) through :meth:`Recorder.record`. ``payload`` is the adapter's own.
    """

    name: str
    module: Any
    adapter: str
    kind: str = "self"
    role: str | None = None
    block: str | None = None  # None: the module itself
    layout: Layout = TOKENS
    payload: P = None  # type: ignore[assignment]
    #: Why this module's map cannot be rebuilt from what its kernel receives (see
    #: ``visualizer._lazy``); None where it can. Set by the adapter in ``find``.
    eager_because: str | None = "its adapter records the map as the module computes it"
    #: Set by the capture before ``attach``: record what defines the map (a Recipe), leaving
    #: the module's own kernel on, instead of the map itself.
    lazy: bool = False

    def __post_init__(self) -> None:
        if self.kind not in ("self", "cross"):
            raise ValueError(f"Target.kind must be 'self' or 'cross', not {self.kind!r}")
        if self.role not in ("encoder", "decoder", None):
            raise ValueError(f"Target.role must be 'encoder', 'decoder' or None, not {self.role!r}")
        if self.block is None:
            self.block = self.name

    def __repr__(self) -> str:
        return f"<Target {self.name!r} {self.kind} via {self.adapter}>"


@dataclasses.dataclass(frozen=True)
class Refusal:
    """An attention module an adapter knows but cannot record, and why (said in a CaptureWarning)."""

    name: str
    module: Any
    adapter: str
    reason: str


class Adapter(Protocol):
    """One framework's way to find and record attention modules; see the module docstring."""

    name: str
    framework: str | None
    supports: str
    order: int

    def find(
        self, model: Any, modules: Sequence[tuple[str, Any]], claimed: dict[int, str], core: Any
    ) -> list[Target | Refusal]: ...

    def attach(self, targets: list[Target], recorder: Recorder, core: Any) -> Callable[[], None]: ...

    def edit_point(self, target: Target, modules: dict[str, Any]) -> EditPoint | str: ...


def adapters(*, available_only: bool = True) -> list[Adapter]:
    """The registered adapters, most specific first; by default only those whose framework is imported."""
    found = []
    for name in REGISTRY:
        adapter = importlib.import_module(f"{__name__}.{name}").ADAPTER
        if available_only and adapter.framework is not None and adapter.framework not in sys.modules:
            continue
        found.append(adapter)
    return found


def supported() -> str:
    """What capture_attention records, one clause per adapter, for error messages."""
    return "; ".join(adapter.supports for adapter in adapters(available_only=False))


def find_targets(model: Any, core: Any) -> tuple[list[Target], list[Refusal]]:
    """Every attention module of ``model`` an adapter records, in model order, and those refused."""
    modules = list(model.named_modules())
    order = {id(module): position for position, (_, module) in enumerate(modules)}
    claimed: dict[int, str] = {}  # id(module) -> path
    targets: list[Target] = []
    refusals: list[Refusal] = []
    for adapter in adapters():
        available = _unclaimed(modules, {path for path in claimed.values() if path})
        for found in adapter.find(model, available, claimed, core):
            if found.module is not None:
                claimed[id(found.module)] = found.name
            (refusals if isinstance(found, Refusal) else targets).append(found)
    # Free functions have no module; they come after the modules, in the order found.
    targets.sort(key=lambda t: order.get(id(t.module), len(order)) if t.module is not None else len(order))
    refusals.sort(key=lambda r: order.get(id(r.module), len(order)))
    return targets, refusals


def attach(targets: list[Target], recorder: Recorder, core: Any) -> list[Callable[[], None]]:
    """Attach every adapter to its targets; returns the detach functions, to call in reverse."""
    detachers: list[Callable[[], None]] = []
    try:
        for adapter in adapters(available_only=False):
            mine = [target for target in targets if target.adapter == adapter.name]
            if mine:
                detachers.append(adapter.attach(mine, recorder, core))
    except BaseException:
        for detach in reversed(detachers):
            detach()
        raise
    return detachers


def block_of(path: str, modules: dict[str, Any]) -> str:
    """The block a module belongs to: its nearest ancestor that is an element of an
    ``nn.ModuleList`` or ``nn.Sequential`` (how every framework stacks its layers), or its
    parent when none is. ``modules`` maps paths to modules (``dict(model.named_modules())``)."""
    from torch import nn

    parts = path.split(".") if path else []
    for end in range(len(parts), 0, -1):
        container = modules.get(".".join(parts[: end - 1])) if end > 1 else modules.get("")
        if isinstance(container, (nn.ModuleList, nn.Sequential)):
            return ".".join(parts[:end])
    return ".".join(parts[:-1]) if len(parts) > 1 else path


def _unclaimed(modules: list, claimed_paths: set[str]) -> list:
    """``modules`` (``named_modules()`` order: a module's descendants follow it) less the claimed
    ones and everything inside them (the root, path "", is never claimed)."""
    if not claimed_paths:
        return modules
    available, skipping = [], None
    for path, module in modules:
        if skipping is not None and path.startswith(skipping):
            continue
        if path and path in claimed_paths:
            skipping = path + "."
            continue
        skipping = None
        available.append((path, module))
    return available


def _discover() -> tuple[str, ...]:
    """The adapter modules of this package (every module whose name has no leading underscore),
    by their ``ADAPTER.order``: a new adapter needs only its own file."""
    names = [info.name for info in pkgutil.iter_modules(__path__) if not info.name.startswith("_")]
    ordered = sorted((importlib.import_module(f"{__name__}.{name}").ADAPTER.order, name) for name in names)
    return tuple(name for _, name in ordered)


#: Adapter modules of this package, most specific first (found, not listed).
REGISTRY = _discover()
