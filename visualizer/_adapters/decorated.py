"""Functions the user captures with ``get_local``: hand-written attention, in any model.

A module owns a captured function when the function is one of its class's methods
(``forward`` or a helper), or when its ``forward`` calls it by a global name. Values are
attributed to the module whose forward is running (see ``_windows``). A captured
function no module owns is recorded under its get_local key whenever it runs during
capture. With several names (``get_local("attn", "v")``) the first is the map.

capture_attention takes these values through a tap: the user's own ``get_local.cache``
keeps working as before, active or not.
"""

from __future__ import annotations

import types

from visualizer._adapters import Target
from visualizer._adapters._windows import Windows
from visualizer._get_local import get_local
from visualizer._targets import describe, wrapped_chain

__all__ = ["attach", "find"]

ADAPTER = __name__.rsplit(".", 1)[-1]


def find(model, modules, claimed) -> list[Target]:
    captured = {func: entry for func, entry in list(get_local._captured.items()) if entry.user}
    if not captured:
        return []
    targets, owned = [], set()
    owners: dict[type, frozenset] = {}
    available = {id(module) for _, module in modules}
    for name, module in model.named_modules():
        cls = type(module)
        if cls not in owners:
            owners[cls] = frozenset(_owned(cls, captured))
        owned |= owners[cls]  # run by some module: never recorded as a loose function
        if owners[cls] and id(module) in available and id(module) not in claimed:
            targets.append(Target(name, module, "self", ADAPTER, detail=owners[cls]))
    for func, entry in captured.items():
        if func not in owned:
            targets.append(Target(entry.key, None, "self", ADAPTER, role=None, detail=frozenset([func])))
    return targets


def _owned(cls, captured) -> set:
    """The captured functions that instances of ``cls`` run: methods, or globals forward calls."""
    found = set()
    for klass in cls.__mro__:
        if klass is object or (klass.__module__, klass.__name__) == ("torch.nn.modules.module", "Module"):
            break  # nn.Module's own methods run in every module
        for value in vars(klass).values():
            found |= _captured_in(value, captured)
    forward = getattr(cls, "forward", None)
    if isinstance(forward, types.FunctionType):
        scope = forward.__globals__
        for name in forward.__code__.co_names:
            if name in scope:
                found |= _captured_in(scope[name], captured)
    return found


def _captured_in(value, captured) -> set:
    try:
        chain = wrapped_chain(value, "capture_attention")
    except TypeError:
        return set()
    return {func for func in chain if func in captured}


def attach(targets, recorder):
    windows = Windows(recorder, _cause)
    try:
        functions = {}
        for target in targets:
            for func in target.detail:
                functions[func] = get_local._captured[func].names[0]
        for func, variable in functions.items():
            windows.tap(func, variable)
        for target in targets:
            if target.module is not None:
                windows.watch(target, target.detail)
            else:
                windows.loose_function(next(iter(target.detail)), target)
    except BaseException:
        windows.close()
        raise
    return windows.close


def _cause(target, function, unbound) -> str:
    names = " and ".join(map(repr, unbound))
    return (
        f"{describe(function)} returned without assigning {names}, so that call has no map. Likely a "
        "fused or early-return path skips it; make the function take the path that computes it."
    )
