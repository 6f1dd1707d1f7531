"""Apply the rewrite to every function of a large body of real code and check each result.

Used by the corpus tests; also runnable by hand, which prints the counts::

    python tests/corpus_tools.py stdlib torch timm transformers

A code object is checked, for one variable and for all of its variables, by:
- the template binds, and keeps every attribute a function relies on (names, argument
  counts, flags, file, first line, variables);
- the original instructions appear in order in the new code, with the same source
  positions (so tracebacks are unchanged) and the same exception handlers;
- every return is reported, and the report's regions unwind to the return value alone;
- a stack simulation with CPython's own ``dis.stack_effect`` finds every return running
  with only its value on the stack and the declared stack size sufficient. The same
  simulation must agree with CPython's compiler on the original code first.
"""

from __future__ import annotations

import bisect
import collections
import dis
import importlib.util
import inspect
import multiprocessing
import os
import sys
import sysconfig
import time
import types
import warnings

from visualizer._core.rewrite import NEVER, RewriteError, bind, instrument, refusal, variables

_KEPT = (
    "co_argcount",
    "co_posonlyargcount",
    "co_kwonlyargcount",
    "co_flags",
    "co_name",
    "co_qualname",
    "co_filename",
    "co_firstlineno",
    "co_varnames",
    "co_cellvars",
    "co_freevars",
    "co_nlocals",
)
_IGNORED_OPS = {"CACHE", "EXTENDED_ARG", "NOP"}
_RETURNS = {"RETURN_VALUE", "RETURN_CONST"}
_JUMPS = set(dis.hasjrel) | set(dis.hasjabs)
_NO_FALLTHROUGH = _RETURNS | {
    "RAISE_VARARGS",
    "RERAISE",
    "JUMP_FORWARD",
    "JUMP_BACKWARD",
    "JUMP_BACKWARD_NO_INTERRUPT",
}


def roots(names: list[str]) -> dict[str, str]:
    """Folder of each corpus: ``stdlib`` or an installed package's name."""
    found = {}
    for name in names:
        if name == "stdlib":
            found[name] = sysconfig.get_paths()["stdlib"]
        else:
            spec = importlib.util.find_spec(name)  # finds the folder; imports nothing
            if spec is None or spec.origin is None:
                raise LookupError(f"{name} is not installed")
            found[name] = os.path.dirname(spec.origin)
    return found


def source_files(root: str) -> list[str]:
    paths = []
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = sorted(d for d in subfolders if d not in ("site-packages", "__pycache__"))
        paths += [os.path.join(folder, f) for f in sorted(files) if f.endswith(".py")]
    return paths


def functions(code: types.CodeType):
    """Every function-like code object (CO_OPTIMIZED) inside ``code`` with a variable."""
    stack = [code]
    while stack:
        current = stack.pop()
        stack += [c for c in current.co_consts if isinstance(c, types.CodeType)]
        if current.co_flags & inspect.CO_OPTIMIZED and variables(current):
            yield current


def check_file(path: str) -> collections.Counter:
    """Outcome counts for one source file; failures are keyed by their first message line."""
    counts = collections.Counter()
    try:
        with open(path, "rb") as file:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                top = compile(file.read(), path, "exec", dont_inherit=True)
    except (SyntaxError, ValueError, UnicodeDecodeError, RecursionError):
        counts["files that do not compile on this Python"] += 1
        return counts
    for code in functions(top):
        counts["code objects"] += 1
        reason = refusal(code)
        if reason is not None:
            counts["refused: " + reason.split(";")[0]] += 1
            continue
        names = tuple(variables(code))
        original = _Analysis(code)
        disagreement = _stack_problem(original)
        if disagreement:  # the simulator must agree with CPython's compiler on unmodified code
            counts[f"FAILED stack simulator on the original: {disagreement} [{code.co_qualname} {path}]"] += 1
            continue
        for chosen in {names[:1], names}:
            try:
                problem = check(code, chosen, original)
            except RewriteError as exc:
                problem = "RewriteError " + str(exc).splitlines()[0].split(": ", 1)[-1]
            if problem:
                counts[f"FAILED {problem} [{code.co_qualname} {path}:{code.co_firstlineno}]"] += 1
            else:
                counts["rewrites checked"] += 1
    return counts


class _Analysis:
    """What the checks need of one code object, disassembled once."""

    def __init__(self, code: types.CodeType) -> None:
        self.code = code
        self.all = list(dis.get_instructions(code))
        self.handlers = _handlers(code, [instr.offset for instr in self.all])
        self.real = [
            (instr.offset, instr.opname, _comparable(instr), instr.positions)
            for instr in self.all
            if instr.opname not in _IGNORED_OPS
        ]


def check(code: types.CodeType, names: tuple[str, ...], original: _Analysis | None = None) -> str | None:
    """None if rewriting ``code`` for ``names`` gives a sound code object, else what is wrong."""
    new = bind(instrument(code, names), recorder=print, on_missing=print, records=None, guard=NEVER)
    if not isinstance(new, types.CodeType):
        return "not a code object"
    for attribute in _KEPT:
        if getattr(new, attribute) != getattr(code, attribute):
            return f"{attribute} changed"
    before = original or _Analysis(code)
    after = _Analysis(new)
    moved = {}  # original offset -> new offset
    position = 0
    for offset, op, argument, positions in before.real:  # the original instructions, in order
        while position < len(after.real) and after.real[position][1:3] != (op, argument):
            position += 1
        if position == len(after.real):
            return f"original instruction {op} lost or reordered"
        if after.real[position][3] != positions:
            return f"source position of {op} changed"
        moved[offset] = after.real[position][0]
        position += 1
    for offset, *_ in before.real:  # each original instruction keeps its exception handler
        old = before.handlers.get(offset)
        new_handler = after.handlers.get(moved[offset])
        if old is None and new_handler is None:
            continue
        if old is None or new_handler is None or (moved.get(old[0]), *old[1:]) != new_handler:
            return f"exception handler of the instruction at {offset} changed: {old} -> {new_handler}"
    returns = sum(op in _RETURNS for _, op, _, _ in before.real)
    reports = sum(op in _RETURNS for _, op, _, _ in after.real)
    # Out-of-line blocks per return that end in one: slow path (one name only), missing
    # variable, and a failed call.
    expected_tail = 3 if len(names) == 1 else 2
    if reports != returns * (1 + expected_tail):
        return f"{returns} returns became {reports}, expected {returns * (1 + expected_tail)}"
    injected = {offset for offset, *_ in after.real} - set(moved.values())
    probes = [after.handlers[offset][1] for offset in injected if offset in after.handlers]
    if any(depth > 1 for depth in probes):
        return f"a probe region unwinds to depth {max(probes)}"
    return _stack_problem(after)


def _stack_problem(analysis: _Analysis) -> str | None:
    """Simulate the value stack with CPython's own stack effects and exception table.

    Checks what the probe relies on, that every return runs with only its return value
    on the stack, and that the declared stack size suffices.
    """
    code, instrs, handlers = analysis.code, analysis.all, analysis.handlers
    index = {instr.offset: position for position, instr in enumerate(instrs)}
    generator = code.co_flags & (inspect.CO_GENERATOR | inspect.CO_COROUTINE | inspect.CO_ASYNC_GENERATOR)
    start = 1 if generator and sys.version_info < (3, 13) else 0  # 3.13 pushes it explicitly
    depth = {0: start}
    pending = [0]

    def reach(position: int, value: int) -> str | None:
        if depth.setdefault(position, value) != value:
            return f"inconsistent stack depth at offset {instrs[position].offset}"
        if position not in seen:
            seen.add(position)
            pending.append(position)
        return None

    seen = {0}
    problem = None
    while pending and problem is None:
        position = pending.pop()
        instr, current = instrs[position], depth[position]
        handler = handlers.get(instr.offset)
        if handler is not None:
            problem = reach(index[handler[0]], handler[1] + handler[2] + 1)
        if instr.opname in _RETURNS and current != (1 if instr.opname == "RETURN_VALUE" else 0):
            return f"{instr.opname} at offset {instr.offset} runs with stack depth {current}"
        if instr.opcode in _JUMPS:
            problem = problem or reach(
                index[instr.argval], current + dis.stack_effect(instr.opcode, instr.arg, jump=True)
            )
        if instr.opname not in _NO_FALLTHROUGH and position + 1 < len(instrs):
            effect = dis.stack_effect(
                instr.opcode, instr.arg, **({"jump": False} if instr.opcode in _JUMPS else {})
            )
            problem = problem or reach(position + 1, current + effect)
    if problem:
        return problem
    deepest = max(depth.values())
    if deepest > code.co_stacksize:
        return f"needs a stack of {deepest}, declares {code.co_stacksize}"
    return None


def _comparable(instr: dis.Instruction):
    if instr.opcode in _JUMPS:
        return None  # jump offsets move with the insertions
    if instr.opname == "LOAD_CONST" and isinstance(instr.argval, types.CodeType):
        return instr.argval.co_qualname
    return instr.argrepr


def _handlers(code: types.CodeType, offsets: list[int]) -> dict[int, tuple]:
    """Instruction offset -> (handler offset, stack depth, push lasti), from the exception table."""
    covered = {}
    for entry in dis._parse_exception_table(code):
        for position in range(
            bisect.bisect_left(offsets, entry.start), bisect.bisect_left(offsets, entry.end)
        ):
            covered[offsets[position]] = (entry.target, entry.depth, entry.lasti)
    return covered


def run(names: list[str], processes: int | None = None) -> dict[str, collections.Counter]:
    """Counts per corpus, checking files in parallel."""
    results = {}
    with multiprocessing.get_context("spawn").Pool(processes or os.cpu_count()) as pool:
        for name, root in roots(names).items():
            counts = collections.Counter()
            for file_counts in pool.imap_unordered(check_file, source_files(root), chunksize=8):
                counts.update(file_counts)
            counts["source files"] = len(source_files(root))
            results[name] = counts
    return results


def report(results: dict[str, collections.Counter]) -> str:
    lines = [f"Python {sys.version.split()[0]}"]
    for name, counts in results.items():
        lines.append(f"{name}:")
        for key, value in sorted(counts.items(), key=lambda kv: (kv[0].startswith("FAILED"), kv[0])):
            lines.append(f"  {value:>7}  {key}")
    return "\n".join(lines)


def failures(results: dict[str, collections.Counter]) -> list[str]:
    return [
        f"{name}: {key} x{n}"
        for name, c in results.items()
        for key, n in c.items()
        if key.startswith("FAILED")
    ]


if __name__ == "__main__":
    started = time.time()
    outcome = run(sys.argv[1:] or ["stdlib"])
    print(report(outcome))
    print(f"{time.time() - started:.0f} s")
