"""Functions the user captures with ``get_local``: hand-written attention, in any model.

A module owns a captured function when the function is one of its class's methods
(``forward`` or a helper), or when its ``forward`` calls it by a global name. Values are
attributed to the module whose forward is running (see ``_scopes``). A captured
function no module owns is recorded under its get_local key whenever it runs during
capture. With several names (``get_local("attn", "v")``) the first is the map.

capture_attention takes these values through a tap: the user's own ``get_local.cache``
keeps working as before, active or not.
"""

from __future__ import annotations

import types

from visualizer._adapters import Target, block_of
from visualizer._adapters._scopes import ForwardScopes
from visualizer._core import describe, wrapped_chain

__all__ = ["ADAPTER"]


class DecoratedAdapter:
    """Functions and methods decorated with ``get_local``, attributed to the modules that run them."""

    name = "get_local"
    framework = None
    supports = "functions or methods decorated with get_local"
    order = 40  # last: get_local functions inside modules no other adapter claimed

    def find(self, model, modules, claimed, core) -> list:
        captured = {info.function: info for info in core.captures()}
        if not captured:
            return []
        everything = dict(model.named_modules())
        targets, owned = [], set()
        owners: dict[type, frozenset] = {}
        available = {id(module) for _, module in modules}
        for name, module in everything.items():
            cls = type(module)
            if cls not in owners:
                owners[cls] = frozenset(_owned(cls, captured))
            owned |= owners[cls]  # run by some module: never recorded as a loose function
            if owners[cls] and id(module) in available and id(module) not in claimed:
                variables = {func: captured[func].names[0] for func in owners[cls]}
                block = block_of(name, everything)
                targets.append(Target(name, module, self.name, block=block, payload=variables))
        for func, info in captured.items():
            if func not in owned:
                targets.append(Target(info.key, None, self.name, payload={func: info.names[0]}))
        return targets

    def attach(self, targets, recorder, core):
        scopes = ForwardScopes(recorder, _cause, core)
        try:
            functions: dict = {}
            for target in targets:
                functions.update(target.payload)
            for func, variable in functions.items():
                scopes.tap(func, variable)
            for target in targets:
                if target.module is not None:
                    scopes.watch(target, tuple(target.payload))
                else:
                    scopes.loose_function(next(iter(target.payload)), target)
        except BaseException:
            scopes.close()
            raise
        return scopes.close

    def edit_point(self, target, modules) -> str:
        return (
            f"{target.name} is recorded through a get_local function, which declares no output "
            "projection to edit"
        )


ADAPTER = DecoratedAdapter()


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


def _cause(target, function, unbound) -> str:
    names = " and ".join(map(repr, unbound))
    return (
        f"{describe(function)} returned without assigning {names}, so that call has no map. Likely a "
        "fused or early-return path skips it; make the function take the path that computes it."
    )
