"""Contract 7: every return path records the variable's value at the moment it returns."""

import contextlib
import sys

import pytest


@pytest.fixture
def capture(gl):
    """Decorate, activate, and return a function that reads the records of a function."""
    gl.activate()

    def records(func):
        return gl.cache[gl.key_of(func)]

    return records


def test_early_returns(gl, capture):
    @gl("v")
    def f(x):
        v = x
        if x < 0:
            return "negative"
        v = x * 10
        if x == 0:
            return "zero"
        v = x * 100
        return "positive"

    assert [f(-1), f(0), f(1)] == ["negative", "zero", "positive"]
    assert capture(f) == [-1, 0, 100]


def test_return_inside_try_except_finally(gl, capture):
    @gl("v")
    def f(mode):
        v = "start"
        try:
            v = "try"
            if mode == "try":
                return 1
            raise KeyError(mode)
        except KeyError:
            v = "except"
            if mode == "except":
                return 2
        finally:
            v = v + "+finally"
        v = "after"
        return 3

    assert [f("try"), f("except"), f("other")] == [1, 2, 3]
    # A return inside try runs the finally block first: the value is read after it.
    assert capture(f) == ["try+finally", "except+finally", "after"]


def test_return_in_finally_overriding_an_exception(gl, capture):
    @gl("v")
    def f():
        v = 1
        try:
            raise ValueError
        finally:
            v = 2
            return v

    assert f() == 2
    assert capture(f) == [2]


def test_return_inside_nested_with_blocks(gl, capture):
    log = []

    @contextlib.contextmanager
    def managed(name):
        log.append(f"enter {name}")
        yield
        log.append(f"exit {name}")

    @gl("v")
    def f(early):
        with managed("a"):
            v = "a"
            with managed("b"):
                v = "b"
                if early:
                    return "early"
            v = "after b"
        return "late"

    assert f(True) == "early" and f(False) == "late"
    assert capture(f) == ["b", "after b"]
    assert log == ["enter a", "enter b", "exit b", "exit a"] * 2


def test_constant_and_implicit_returns(gl, capture):
    @gl("v")
    def constant(x):
        v = x
        return 42

    @gl("v")
    def implicit(x):
        v = x + 1

    @gl("v")
    def bare(x):
        v = x + 2
        return

    assert constant(1) == 42 and implicit(1) is None and bare(1) is None
    assert capture(constant) == [1] and capture(implicit) == [2] and capture(bare) == [3]


def test_loops_with_break_continue_and_else(gl, capture):
    @gl("total")
    def f(items, stop):
        total = 0
        for item in items:
            if item < 0:
                continue
            if item == stop:
                break
            total += item
            if total > 100:
                return "overflow"
        else:
            total = -total
        while True:
            total += 1000
            break
        return "done"

    assert f([1, -5, 2, 3], stop=3) == "done"
    assert f([1, 2], stop=99) == "done"
    assert f([60, 70], stop=99) == "overflow"
    assert capture(f) == [1003, 997, 130]


def test_the_value_is_read_when_the_function_returns(gl, capture):
    @gl("v")
    def f():
        v = [1]
        v = v + [2]
        v.append(3)
        return None

    f()
    assert capture(f) == [[1, 2, 3]]


def test_return_from_inside_for_and_while_loops(gl, capture):
    @gl("i")
    def find(items, wanted):
        i = -1
        for i, item in enumerate(items):
            while item > 10:
                item -= 10
                if item == wanted:
                    return i
            if item == wanted:
                return i
        return None

    assert find([1, 2, 3], 2) == 1
    assert find([25], 5) == 0
    assert find([1], 9) is None
    assert capture(find) == [1, 0, 0]


@pytest.mark.skipif(sys.version_info < (3, 10), reason="match statement")
def test_returns_inside_match_arms(gl, capture):
    @gl("kind")
    def classify(value):
        kind = "unknown"
        match value:
            case int():
                kind = "int"
                return kind.upper()
            case [first, *_]:
                kind = f"list of {type(first).__name__}"
                return kind
            case {"a": a}:
                kind = "mapping"
                return a
        return kind

    assert [classify(1), classify([1.0]), classify({"a": 5}), classify("s")] == [
        "INT",
        "list of float",
        5,
        "unknown",
    ]
    assert capture(classify) == ["int", "list of float", "mapping", "unknown"]


def test_return_of_a_conditional_expression_and_return_value_unchanged(gl, capture):
    sentinel = object()

    @gl("v")
    def f(x):
        v = x
        return sentinel if x else (x, v)

    assert f(1) is sentinel
    assert f(0) == (0, 0)
    assert capture(f) == [1, 0]
