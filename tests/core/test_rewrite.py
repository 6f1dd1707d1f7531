"""The pure rewrite: variables, refusals, templates, binding, and the template cache."""

import dis
import types

import pytest

from visualizer._core import rewrite as _rewrite
from visualizer._core.rewrite import (
    GUARD,
    NEVER,
    ON_MISSING,
    RECORDER,
    RECORDS,
    RewriteError,
    bind,
    instrument,
    variables,
)


def sample(a, b=1):
    c = a + b

    def inner():
        return c

    return inner


def test_variables_and_their_kinds():
    assert variables(sample.__code__) == {"a": "fast", "b": "fast", "c": "cell", "inner": "fast"}
    inner = sample(1)
    assert variables(inner.__code__) == {"c": "free"}


def test_template_holds_placeholders_and_bind_replaces_them():
    template = instrument(sample.__code__, ("c",))
    assert {RECORDER, ON_MISSING, RECORDS, GUARD} <= set(template.co_consts)
    calls = []

    class Records(list):
        __hash__ = object.__hash__

    records = Records()
    code = bind(template, recorder=calls.append, on_missing=calls.append, records=records, guard=int)
    assert not any(isinstance(c, _rewrite._Placeholder) for c in code.co_consts)
    func = types.FunctionType(code, sample.__globals__, "sample", sample.__defaults__, sample.__closure__)
    func(1)  # an int: the fast path appends it directly
    func(0.5)  # a float: the recorder is called
    assert records == [2] and calls == [1.5]


def test_unbound_variable_calls_on_missing_with_the_exception():
    def f(flag):
        if flag:
            y = 1
        return 0

    missed = []
    code = bind(instrument(f.__code__, ("y",)), recorder=print, on_missing=missed.append)
    g = types.FunctionType(code, {}, "f")
    assert g(False) == 0
    assert len(missed) == 1 and isinstance(missed[0], NameError)
    assert missed[0].__traceback__.tb_frame.f_code is code


def test_one_report_before_every_return():
    def f(x):
        if x:
            return 1
        try:
            return 2
        finally:
            x = 3

    template = instrument(f.__code__, ("x",))
    originals = sum(i.opname.startswith("RETURN") for i in dis.get_instructions(f.__code__))
    rewritten = sum(i.opname.startswith("RETURN") for i in dis.get_instructions(template))
    assert rewritten == 4 * originals  # inline, slow path, missing variable, failed call
    assert template.co_firstlineno == f.__code__.co_firstlineno
    assert template.co_varnames == f.__code__.co_varnames


def test_unknown_variable_and_refusals():
    with pytest.raises(ValueError, match="not variables"):
        instrument(sample.__code__, ("nope",))

    async def agen():
        x = 1
        yield x

    assert "async generator" in _rewrite.refusal(agen.__code__)
    with pytest.raises(RewriteError, match="async generator"):
        instrument(agen.__code__, ("x",))
    assert _rewrite.refusal(sample.__code__) is None


def test_template_cache_is_per_code_object_identity():
    one = compile("def f(x):\n    y = x\n    return y\n", "one.py", "exec")
    two = compile("def f(x):\n    y = x\n    return y\n", "two.py", "exec")
    code_one = next(c for c in one.co_consts if isinstance(c, types.CodeType))
    code_two = next(c for c in two.co_consts if isinstance(c, types.CodeType))
    assert code_one == code_two  # CPython ignores the file name when comparing code
    first = _rewrite.cached_instrument(code_one, ("y",))
    assert _rewrite.cached_instrument(code_one, ("y",)) is first
    second = _rewrite.cached_instrument(code_two, ("y",))
    assert (first.co_filename, second.co_filename) == ("one.py", "two.py")


def test_never_matches_any_type():
    assert NEVER is not type(None)
    code = bind(instrument(sample.__code__, ("c",)), recorder=print, on_missing=print)
    assert NEVER in code.co_consts
