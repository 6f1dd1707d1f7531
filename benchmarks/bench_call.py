"""Per-call cost of capturing a local variable, on a trivial function.

    python benchmarks/bench_call.py            # full run, prints a markdown table
    python benchmarks/bench_call.py --quick    # a few seconds: the CI smoke test

Every variant runs the same trivial function, ``attn = x + 1; return attn``, and records
``attn`` on each call where it records at all. Two more rows show get_local's slower
paths: a value that needs converting (a 3-item list, copied by the Python-level
recorder) and two names recorded as a tuple. Rounds are interleaved, with the order
shuffled in each round. The table divides each variant's fastest round by the plain call's
fastest round (the cost without noise) and its median round by the plain call's median,
and gives the median time per call. The machine is shared and noisy: compare ratios from
one run only.
"""

from __future__ import annotations

import argparse
import functools
import platform
import random
import statistics
import sys
import time
import timeit

from bytecode import Bytecode, Instr

from visualizer._core.get_local import GetLocal

SOURCE = "def trivial(x):\n    attn = x + 1\n    return attn\n"
# The same, recording a small list (converted by the Python-level recorder) or two names.
SOURCE_LIST = "def trivial(x):\n    attn = [x, x, x]\n    return x + 1\n"
SOURCE_TWO = "def trivial(x):\n    attn = x + 1\n    other = x\n    return attn\n"


def fresh_trivial(source: str = SOURCE):
    namespace = {}
    exec(compile(source, "<trivial>", "exec"), namespace)
    return namespace["trivial"]


def plain():
    return fresh_trivial(), lambda: None


def get_local_inactive():
    gl = GetLocal()
    return gl("attn")(fresh_trivial()), lambda: None


def get_local_active(source: str = SOURCE, names: tuple = ("attn",)):
    gl = GetLocal()
    func = gl(*names)(fresh_trivial(source))
    gl.activate()
    return func, gl.clear


def original_approach():
    """The 2021 tool, re-implemented.

    It returns (result, value) before the last instruction and unpacks that in a wrapper.
    """
    func = fresh_trivial()
    cache = {func.__qualname__: []}
    code = Bytecode.from_code(func.__code__)
    code[-1:-1] = [
        Instr("STORE_FAST", "_res"),
        Instr("LOAD_FAST", "attn"),
        Instr("STORE_FAST", "_value"),
        Instr("LOAD_FAST", "_res"),
        Instr("LOAD_FAST", "_value"),
        Instr("BUILD_TUPLE", 2),
        Instr("STORE_FAST", "_result_tuple"),
        Instr("LOAD_FAST", "_result_tuple"),
    ]
    func.__code__ = code.to_code()

    def wrapper(*args, **kwargs):
        res, values = func(*args, **kwargs)
        cache[func.__qualname__].append(values)  # the original also called .detach().cpu().numpy()
        return res

    return wrapper, lambda: cache[func.__qualname__].clear()


def settrace():
    """A global trace function, installed for the whole timing block, recording on 'return'."""
    func = fresh_trivial()
    target, records = func.__code__, []

    def local(frame, event, arg):
        if event == "return":
            records.append(frame.f_locals["attn"])
        return local

    def tracer(frame, event, arg):
        return local if frame.f_code is target else None

    return func, records.clear, (lambda: sys.settrace(tracer), lambda: sys.settrace(None))


def setprofile():
    """A global profile function, installed for the whole timing block: it sees every call and return."""
    func = fresh_trivial()
    target, records = func.__code__, []

    def profiler(frame, event, arg):
        if event == "return" and frame.f_code is target:
            records.append(frame.f_locals["attn"])

    return func, records.clear, (lambda: sys.setprofile(profiler), lambda: sys.setprofile(None))


def monitoring():
    """sys.monitoring PY_RETURN on the target code only (3.12+); the frame comes from sys._getframe."""
    if not hasattr(sys, "monitoring"):
        raise RuntimeError("needs Python 3.12+")
    func = fresh_trivial()
    records, events, tool = [], sys.monitoring.events, 5
    sys.monitoring.use_tool_id(tool, "bench")

    def on_return(code, offset, value):
        records.append(sys._getframe(1).f_locals["attn"])

    sys.monitoring.register_callback(tool, events.PY_RETURN, on_return)
    sys.monitoring.set_local_events(tool, func.__code__, events.PY_RETURN)
    return func, records.clear


def anycapture():
    from peers import load_anycapture

    module = load_anycapture()
    module.get_local.activate()
    func = module.get_local("attn")(fresh_trivial())
    return func, module.get_local.clear


VARIANTS = {
    "plain call": plain,
    "get_local, inactive": get_local_inactive,
    "get_local, active": get_local_active,
    "get_local, active, a list value (converted)": functools.partial(get_local_active, SOURCE_LIST),
    "get_local, active, two names (a tuple)": functools.partial(
        get_local_active, SOURCE_TWO, ("attn", "other")
    ),
    "original approach (tuple + wrapper)": original_approach,
    "anycapture 0.1.4": anycapture,
    "sys.monitoring PY_RETURN": monitoring,
    "sys.setprofile": setprofile,
    "sys.settrace": settrace,
}


NO_HOOKS = (lambda: None, lambda: None)


def measure(rounds: int, number: int, seed: int = 0) -> dict:
    prepared, errors = {}, {}
    for name, make in VARIANTS.items():
        try:
            func, reset, *hooks = make()
            enter, leave = hooks[0] if hooks else NO_HOOKS
            enter()
            try:
                assert func(1) == 2  # also warms up get_local's fast path
            finally:
                leave()
            prepared[name] = (func, reset, enter, leave)
        except Exception as exc:  # report, do not hide: the row says why
            errors[name] = f"{type(exc).__name__}: {exc}"
    times = {name: [] for name in prepared}
    order = list(prepared)
    shuffle = random.Random(seed)
    for _ in range(rounds):
        shuffle.shuffle(order)
        for name in order:
            func, reset, enter, leave = prepared[name]
            enter()
            try:
                elapsed = min(timeit.repeat("f(1)", globals={"f": func}, number=number, repeat=3))
            finally:
                leave()
            times[name].append(elapsed / number)
            reset()
    return {"times": times, "errors": errors}


def table(result: dict) -> str:
    """Ratios to the plain call: of the fastest rounds (the cost without noise) and of the medians."""
    times, errors = result["times"], result["errors"]
    base = times["plain call"]
    lines = [
        "| variant | ratio of minimums | ratio of medians | ns per call, median |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name in VARIANTS:
        if name in errors:
            lines.append(f"| {name} | n/a | n/a | {errors[name]} |")
            continue
        lines.append(
            f"| {name} | {min(times[name]) / min(base):.2f}x "
            f"| {statistics.median(times[name]) / statistics.median(base):.2f}x "
            f"| {statistics.median(times[name]) * 1e9:.0f} |"
        )
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few seconds, for the CI smoke test")
    parser.add_argument("--rounds", type=int, default=None)
    args = parser.parse_args(argv)
    rounds = args.rounds or (3 if args.quick else 25)
    number = 2_000 if args.quick else 100_000
    started = time.strftime("%Y-%m-%d %H:%M")
    result = measure(rounds, number)
    print(
        f"Python {platform.python_version()}, {platform.machine()}, {platform.processor() or 'cpu'}; "
        f"{rounds} interleaved rounds of 3 x {number} calls; {started}\n"
    )
    print(table(result))


if __name__ == "__main__":
    main()
