"""Model adapters: each finds one framework's attention modules and records their weights.

An adapter is a module with two functions:

- ``find(model, modules, claimed) -> list[Target]``: the attention modules it knows how
  to record, among ``modules`` (``model.named_modules()`` as a list) not yet ``claimed``;
- ``attach(targets, recorder) -> detach``: make those modules produce weights and send
  them to ``recorder`` (see :class:`Recorder`); ``detach()`` undoes every change.

They are tried in :data:`ORDER`, most specific first, and a module claimed by one (or
inside one claimed) is not offered to the next. Each imports its framework lazily.
"""

from __future__ import annotations

import importlib
import re
from typing import Protocol

__all__ = ["ORDER", "Recorder", "Target", "attach", "find_targets", "layer_of", "role_of"]

#: Adapter modules, most specific first.
ORDER = ("hf_transformers", "timm_vit", "torch_mha", "decorated")


class Target:
    """One attention module (or one get_local function) that can be recorded."""

    __slots__ = ("adapter", "detail", "kind", "layer", "module", "name", "role")

    def __init__(
        self, name: str, module, kind: str, adapter: str, *, role: str | None = None, detail=None
    ) -> None:
        self.name = name  # module path, or a get_local key for a free function
        self.module = module  # None for a free function
        self.kind = kind  # "self" or "cross"
        self.adapter = adapter
        self.role = role if role is not None else role_of(name)
        self.layer = layer_of(name)
        self.detail = detail  # adapter-specific: output index, function, ...

    def __repr__(self) -> str:
        return f"<Target {self.name!r} {self.kind} via {self.adapter}>"


class Recorder(Protocol):
    """What adapters report to, for each target."""

    def ran(self, target: Target) -> None:
        """The target's forward started."""

    def record(self, target: Target, weights) -> None:
        """Attention weights of one call: (batch, heads, queries, keys), or (heads, queries, keys)."""

    def missing(self, target: Target, cause: str) -> None:
        """A call produced no weights; ``cause`` says why and how to fix it."""


def find_targets(model) -> list[Target]:
    """Every attention module of ``model`` an adapter can record, in model order."""
    modules = list(model.named_modules())
    order = {id(module): position for position, (_, module) in enumerate(modules)}
    claimed: dict[int, str] = {}  # id(module) -> path
    targets: list[Target] = []
    for name in ORDER:
        adapter = importlib.import_module(f"{__name__}.{name}")
        claimed_paths = {path for path in claimed.values() if path}
        available = [(path, module) for path, module in modules if not _inside(path, claimed_paths)]
        for target in adapter.find(model, available, claimed):
            if target.module is not None:
                claimed[id(target.module)] = target.name
            targets.append(target)
    # Free functions have no module; they come after the modules, in the order found.
    targets.sort(key=lambda t: order.get(id(t.module), len(order)) if t.module is not None else len(order))
    return targets


def attach(targets: list[Target], recorder: Recorder) -> list:
    """Attach every adapter to its targets; returns the detach functions, to call in reverse."""
    detachers = []
    try:
        for name in ORDER:
            mine = [target for target in targets if target.adapter == name]
            if mine:
                adapter = importlib.import_module(f"{__name__}.{name}")
                detachers.append(adapter.attach(mine, recorder))
    except BaseException:
        for detach in reversed(detachers):
            detach()
        raise
    return detachers


def _inside(path: str, claimed_paths: set[str]) -> bool:
    """Whether ``path`` is a claimed module or inside one (the root, path "", never counts)."""
    parts = path.split(".")
    return any(".".join(parts[:i]) in claimed_paths for i in range(1, len(parts) + 1)) if path else False


_ROLES = (
    ("decoder", re.compile(r"(^|[._])dec(oder)?($|[._]|_?\d)")),
    ("encoder", re.compile(r"(^|[._])enc(oder)?($|[._]|_?\d)")),
)


def role_of(path: str) -> str | None:
    """``"decoder"``, ``"encoder"`` or None, from the last of those words in a module path."""
    found, at = None, -1
    for role, pattern in _ROLES:
        for match in pattern.finditer(path):
            if match.start() > at:
                found, at = role, match.start()
    return found


def layer_of(path: str) -> str:
    """The block a module belongs to: its path up to the last numeric part (``decoder.layers.0``)."""
    parts = path.split(".")
    for i in range(len(parts) - 1, -1, -1):
        if parts[i].isdigit():
            return ".".join(parts[: i + 1])
    return path
