"""Rewrite a code object so that it reports chosen variables every time it returns.

Pure: no torch, no records, no global state. It works on abstract bytecode (the
``bytecode`` package) and produces a *template*: a code object whose constants include
the placeholders below. :func:`bind` swaps them for real objects with ``code.replace``,
which is cheap, so callers may rebind as often as they like (clearing the cache,
changing options) without rewriting again.

Before **every** return instruction (``RETURN_VALUE``; also ``RETURN_CONST`` on 3.12-3.13)
the template runs, with the return value left untouched on the stack::

    probe   load each variable inside a zero-cost exception-table region. An unassigned
            variable raises there, and the handler calls ON_MISSING(exc) instead: a plain
            LOAD_FAST of an unbound local would segfault on 3.12+.
    fast    (one variable only) if type(value) is GUARD: LIST_APPEND value to RECORDS.
    slow    otherwise RECORDER(value, ...) is called and its result discarded.

Calls into Python (RECORDER, ON_MISSING) sit in a region of their own whose handler is
pure bytecode: a RecursionError, which a function returning right at the recursion limit
would get from the extra frame, drops that record and the function returns normally;
any other exception (KeyboardInterrupt, a warning turned into an error) is re-raised, as
if raised by the return itself.

Nothing is stored into the frame (no sentinels), so ``locals()``, debuggers and
``UnboundLocalError`` behave exactly as without capture, and every injected instruction
carries the location of the return it precedes, so tracebacks are unchanged.
"""

from __future__ import annotations

import dis
import inspect
import types
import weakref

from bytecode import Bytecode, CellVar, FreeVar, Instr, Label, TryBegin, TryEnd

from visualizer._core.versions import PY312, PY313
from visualizer._errors import RewriteError

__all__ = [
    "GUARD",
    "NEVER",
    "ON_MISSING",
    "RECORDER",
    "RECORDS",
    "bind",
    "cached_instrument",
    "instrument",
    "refusal",
    "variables",
]


class _Placeholder:
    """A constant in a template that :func:`bind` replaces."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<{self.name}>"


RECORDER = _Placeholder("RECORDER")
ON_MISSING = _Placeholder("ON_MISSING")
RECORDS = _Placeholder("RECORDS")
GUARD = _Placeholder("GUARD")


class NEVER:
    """A GUARD that no value's type is: binds the fast path off."""


_RETURNS = frozenset({"RETURN_VALUE", "RETURN_CONST"})
_LISTING_LINES = 60


def variables(code: types.CodeType) -> dict[str, str]:
    """Every variable of ``code`` mapped to its kind: ``'fast'``, ``'cell'`` or ``'free'``.

    Arguments come first, in signature order. A variable that a nested function
    captures is a ``'cell'`` even when it is also an argument.

    >>> variables((lambda x: lambda: x).__code__)
    {'x': 'cell'}
    """
    kinds = {name: "fast" for name in code.co_varnames}
    kinds.update((name, "cell") for name in code.co_cellvars)
    kinds.update((name, "free") for name in code.co_freevars)
    return kinds


def refusal(code: types.CodeType) -> str | None:
    """Why ``code`` is not captured, or None when it can be.

    Two kinds are refused:

    - async generators: their returns end iteration without a value anyone awaits, so
      "the value when it returns" has no useful meaning;
    - code in which one name is both a cell and a free variable. Python 3.12+ makes such
      code for a class body nested in a generic (PEP 695) function whose comprehension
      rebinds the type parameter; ``bytecode`` cannot represent its three same-named slots.
    """
    shared = sorted(set(code.co_cellvars) & set(code.co_freevars))
    if shared:
        return (
            f"{', '.join(map(repr, shared))} is both a cell and a free variable of this code "
            "(a PEP 695 type-parameter scope), which the bytecode package cannot represent; "
            "capture a variable of an enclosing or nested function instead."
        )
    if code.co_flags & inspect.CO_ASYNC_GENERATOR:
        return (
            "it is an async generator function; get_local records a variable when a "
            "function returns. Decorate the coroutine or function that computes the value "
            "instead, or append it to a list of your own inside the async generator."
        )
    return None


def instrument(code: types.CodeType, names: tuple[str, ...]) -> types.CodeType:
    """Return a template of ``code`` that reports ``names`` before every return.

    The result still holds the placeholders; pass it to :func:`bind` before use.
    ``names`` must all be variables of ``code`` (see :func:`variables`).
    """
    kinds = variables(code)
    unknown = [name for name in names if name not in kinds]
    if unknown:
        raise ValueError(f"{unknown} are not variables of {code.co_qualname}")
    reason = refusal(code)
    if reason is not None:
        raise RewriteError(f"{code.co_qualname} cannot be captured: {reason}")
    try:
        # Keep CPython's own exception-handler depths rather than recomputing them.
        bytecode = Bytecode.from_code(code, conserve_exception_block_stackdepth=True)
        bytecode.argnames = list(code.co_varnames)  # keeps the order of the locals table
        bytecode[:] = _Rewriter(names, kinds).rewrite(bytecode)
        # At a return CPython's stack holds at most the return value; the report pushes
        # at most a callable, a NULL and the loaded variables on top of it.
        stacksize = max(code.co_stacksize, 1 + 2 + max(1, len(names)))
        new = bytecode.to_code(stacksize=stacksize, compute_exception_stack_depths=False)
    except RewriteError:
        raise
    except Exception as exc:
        raise RewriteError(_failure(code, exc)) from exc
    if new.co_varnames != code.co_varnames:
        raise RewriteError(_failure(code, AssertionError("the table of local variables changed")))
    return new


def bind(
    template: types.CodeType,
    *,
    recorder: object,
    on_missing: object,
    records: list | None = None,
    guard: type = NEVER,
) -> types.CodeType:
    """A runnable code object: ``template`` with its placeholders replaced.

    ``records`` must hash (``visualizer._core.records.Records`` does) because code objects
    hash their constants; it may be None when ``guard`` is :class:`NEVER`.
    """
    values = {RECORDER: recorder, ON_MISSING: on_missing, RECORDS: records, GUARD: guard}
    consts = tuple(values[c] if type(c) is _Placeholder else c for c in template.co_consts)
    return template.replace(co_consts=consts)


# id(code) -> (weak reference to code, {names: template}). Keyed by identity: code objects
# compare equal across files (co_filename is not compared), and a template carries its file.
_templates: dict[int, tuple[weakref.ref, dict]] = {}


def cached_instrument(code: types.CodeType, names: tuple[str, ...]) -> types.CodeType:
    """:func:`instrument`, remembered for as long as ``code`` lives.

    Closures made in a loop share one code object, so decorating each of them rewrites
    only once.
    """
    key = id(code)
    entry = _templates.get(key)
    if entry is None or entry[0]() is not code:

        def forget(ref, key=key):
            if _templates.get(key, (None,))[0] is ref:
                del _templates[key]

        entry = _templates[key] = (weakref.ref(code, forget), {})
    template = entry[1].get(names)
    if template is None:
        template = entry[1][names] = instrument(code, names)
    return template


class _Rewriter:
    """One pass over abstract bytecode, inserting the report before each return."""

    def __init__(self, names: tuple[str, ...], kinds: dict[str, str]) -> None:
        self.names = names
        self.kinds = kinds

    def rewrite(self, bytecode: Bytecode) -> list:
        out: list = []
        tail: list = []  # out-of-line blocks: the slow path and the handlers
        region: TryBegin | None = None  # the exception-table region open at this point
        region_has_code = False
        for item in bytecode:
            if isinstance(item, TryBegin):
                if region is not None:
                    raise RewriteError("overlapping exception-table regions")
                region, region_has_code = item, False
                out.append(item)
            elif isinstance(item, TryEnd):
                if region is None:
                    raise RewriteError("an exception-table region ends that never began")
                out.append(TryEnd(region))  # the region may have been split: end its last part
                region = None
            elif isinstance(item, Instr) and item.name in _RETURNS:
                # The report runs outside any region the return sits in (a generator's
                # StopIteration guard, say); that region resumes for the return itself.
                if region is not None:
                    if region_has_code:
                        out.append(TryEnd(region))
                    else:
                        out.remove(region)
                out.extend(self._report(item, tail))
                if region is not None:
                    region = region.copy()
                    out.append(region)
                out.append(item)
                region_has_code = True
            else:
                if isinstance(item, Instr):
                    region_has_code = True
                out.append(item)
        if region is not None:
            raise RewriteError("an exception-table region never ends")
        return out + tail

    def _report(self, ret: Instr, tail: list) -> list:
        """The inline part of the report before ``ret``; appends its blocks to ``tail``."""
        at = _At(ret.location)
        # Regions unwind to what the return needs: its value (RETURN_VALUE) or nothing.
        depth = 1 if ret.name == "RETURN_VALUE" else 0
        missing, failed = Label(), Label()
        probe = TryBegin(missing, False, depth)

        def guarded(*instructions) -> list:
            """Calls into Python: a RecursionError there (a function returning right at the
            recursion limit) drops the record; anything else is re-raised at the return."""
            region = TryBegin(failed, False, depth)
            return [region, *instructions, TryEnd(region)]

        if len(self.names) == 1:
            (name,) = self.names
            slow = Label()
            inline = [
                probe,
                *at.callee(type),
                self._load(name, at),
                TryEnd(probe),
                *guarded(*at.call(1)),
                at("LOAD_CONST", GUARD),
                at("IS_OP", 0),
                at("POP_JUMP_IF_FALSE" if PY312 else "POP_JUMP_FORWARD_IF_FALSE", slow),
                at("LOAD_CONST", RECORDS),
                self._load(name, at),
                at("LIST_APPEND", 1),
                at("POP_TOP"),
            ]
            tail += [
                slow,
                *guarded(*at.callee(RECORDER), self._load(name, at), *at.call(1)),
                at("POP_TOP"),
                ret.copy(),
            ]
        else:
            inline = [
                probe,
                *at.callee(RECORDER),
                *(self._load(name, at) for name in self.names),
                TryEnd(probe),
                *guarded(*at.call(len(self.names))),
                at("POP_TOP"),
            ]
        reraise = Label()
        tail += [
            # The probe found a variable unassigned: the exception is on top of the stack.
            missing,
            *guarded(*at.call_with_top(ON_MISSING)),
            at("POP_TOP"),
            ret.copy(),
            # A call into Python failed: return normally on RecursionError, else re-raise.
            failed,
            at("LOAD_CONST", RecursionError),
            at("CHECK_EXC_MATCH"),
            at("POP_JUMP_IF_FALSE" if PY312 else "POP_JUMP_FORWARD_IF_FALSE", reraise),
            at("POP_TOP"),
            ret.copy(),
            reraise,
            at("RERAISE", 0),
        ]
        return inline

    def _load(self, name: str, at: _At) -> Instr:
        kind = self.kinds[name]
        if kind == "cell":
            return at("LOAD_DEREF", CellVar(name))
        if kind == "free":
            return at("LOAD_DEREF", FreeVar(name))
        # 3.11's LOAD_FAST checks for an unbound local; 3.12+ needs the _CHECK form.
        return at("LOAD_FAST_CHECK" if PY312 else "LOAD_FAST", name)


class _At:
    """Builds instructions that all carry one source location."""

    def __init__(self, location) -> None:
        self.location = location

    def __call__(self, name: str, *arg) -> Instr:
        return Instr(name, *arg, location=self.location)

    def callee(self, constant) -> list[Instr]:
        """Push ``constant`` as the callable of a call whose arguments come next."""
        if PY313:
            return [self("LOAD_CONST", constant), self("PUSH_NULL")]
        return [self("PUSH_NULL"), self("LOAD_CONST", constant)]

    def call(self, nargs: int) -> list[Instr]:
        if PY312:
            return [self("CALL", nargs)]
        return [self("PRECALL", nargs), self("CALL", nargs)]

    def call_with_top(self, constant) -> list[Instr]:
        """Call ``constant`` with the value on top of the stack as its one argument."""
        if PY313:
            prologue = [self("LOAD_CONST", constant), self("SWAP", 2), self("PUSH_NULL"), self("SWAP", 2)]
        else:
            prologue = [self("PUSH_NULL"), self("SWAP", 2), self("LOAD_CONST", constant), self("SWAP", 2)]
        return prologue + self.call(1)


def _failure(code: types.CodeType, exc: Exception) -> str:
    listing = dis.Bytecode(code).dis().splitlines()
    if len(listing) > _LISTING_LINES:
        listing = listing[:_LISTING_LINES] + [f"... ({len(listing) - _LISTING_LINES} more lines)"]
    return (
        f"could not rewrite {code.co_qualname} ({code.co_filename}:{code.co_firstlineno}): "
        f"{type(exc).__name__}: {exc}\n"
        "Please report this with the disassembly below.\n" + "\n".join(listing)
    )
