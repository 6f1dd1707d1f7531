"""Find the Python function that holds a variable, whatever it is wrapped in.

``get_local`` is applied to functions, methods, classmethods, staticmethods, properties,
partials and functions wrapped by other decorators. :func:`resolve` finds the plain
function whose code gets rewritten, and explains clearly what to decorate instead when
there is none.
"""

from __future__ import annotations

import difflib
import functools
import types

from visualizer._core.rewrite import refusal, variables

__all__ = ["describe", "resolve", "unwrap", "wrapped_chain"]

_BUILTINS = (
    types.BuiltinFunctionType,
    types.BuiltinMethodType,
    types.MethodDescriptorType,
    types.WrapperDescriptorType,
    types.MethodWrapperType,
    types.ClassMethodDescriptorType,
)


def describe(func: types.FunctionType) -> str:
    """``'Attention.forward (mymodel.py:12)'``: a function named for a human."""
    code = func.__code__
    return f"{func.__qualname__} ({code.co_filename}:{code.co_firstlineno})"


def unwrap(obj, what: str) -> types.FunctionType:
    """The plain function inside ``obj``, before following ``__wrapped__``.

    ``what`` names the call in error messages (``"get_local('attn')"``).
    """
    seen = 0
    while not isinstance(obj, types.FunctionType):
        seen += 1
        if seen > 100:
            raise TypeError(f"{what}: {obj!r} wraps itself")
        if isinstance(obj, (classmethod, staticmethod, types.MethodType)):
            obj = obj.__func__
        elif isinstance(obj, property):
            if obj.fget is None:
                raise TypeError(f"{what}: this property has no getter to capture")
            obj = obj.fget
        elif isinstance(obj, (functools.partial, functools.partialmethod)):
            obj = obj.func
        elif isinstance(obj, type):
            raise TypeError(
                f"{what} was given the class {obj.__qualname__}; decorate the method that "
                f"computes the variable instead, e.g. {what}({obj.__qualname__}.forward)"
            )
        elif isinstance(obj, _BUILTINS):
            name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", repr(obj))
            raise TypeError(
                f"{what}: {name} is a builtin (implemented in C), so it has no Python "
                "local variables to record; decorate the Python function that calls it"
            )
        elif callable(obj):
            kind = type(obj).__qualname__
            raise TypeError(
                f"{what} was given an instance of {kind}, not a function; decorate its "
                f"method instead, e.g. {what}({kind}.forward) or "
                f"{what}(type(obj).__call__)"
            )
        else:
            raise TypeError(f"{what} decorates functions, not {type(obj).__name__} objects")
    return obj


def wrapped_chain(obj, what: str) -> list[types.FunctionType]:
    """The function inside ``obj`` and those it wraps through ``__wrapped__``, outermost first."""
    chain = [unwrap(obj, what)]
    while True:
        inner = getattr(chain[-1], "__wrapped__", None)
        if inner is None:
            return chain
        try:
            inner = unwrap(inner, what)
        except TypeError:
            return chain  # wraps something that is not Python code: stop at what we have
        if any(inner is func for func in chain):
            return chain
        chain.append(inner)


def resolve(obj, names: tuple[str, ...], what: str) -> types.FunctionType:
    """The function to rewrite for ``obj`` and ``names``.

    Follows ``__wrapped__`` (set by ``functools.wraps``) and picks the innermost function
    that has every name as a variable: the one the user wrote. Raises ValueError, naming
    the function and listing its variables, when none has them all.
    """
    chain = wrapped_chain(obj, what)
    for func in reversed(chain):
        kinds = variables(func.__code__)
        if all(name in kinds for name in names):
            reason = refusal(func.__code__)
            if reason is not None:
                raise TypeError(f"{what} cannot capture {describe(func)}: {reason}")
            return func
    raise ValueError(_not_a_variable(chain, names, what))


def _not_a_variable(chain: list, names: tuple[str, ...], what: str) -> str:
    func = chain[-1]
    code = func.__code__
    kinds = variables(code)
    missing = [name for name in names if name not in kinds]
    listed = ", ".join(kinds) if kinds else "(none)"
    lines = [
        f"{what}: {', '.join(map(repr, missing))} "
        f"{'is not a variable' if len(missing) == 1 else 'are not variables'} of {describe(func)}.",
        f"Its variables (arguments, locals, cells): {listed}.",
    ]
    for name in missing:
        if name in code.co_names:
            lines.append(f"{name!r} is a global or attribute name there, not a local variable.")
        close = difflib.get_close_matches(name, list(kinds), n=1)
        if close:
            lines.append(f"Did you mean {close[0]!r}?")
    if len(chain) > 1:
        through = " -> ".join(f.__qualname__ for f in chain)
        lines.append(f"(Looked through the __wrapped__ chain {through}; none has them all.)")
    return "\n".join(lines)
