"""Contract 10: bad input is refused at decoration with a clear message; errors propagate."""

import traceback

import pytest


def attention(x):
    attn = x * 2
    out = attn + 1
    return out


@pytest.mark.parametrize("active", [False, True])
def test_unknown_name_raises_at_decoration_naming_function_and_variables(gl, active):
    if active:
        gl.activate()
    code = attention.__code__
    with pytest.raises(ValueError) as error:
        gl("atn")(attention)
    message = str(error.value)
    assert "'atn' is not a variable of attention" in message
    assert "x, attn, out" in message
    assert "Did you mean 'attn'?" in message
    assert attention.__code__ is code
    assert gl.cache == {}


def test_global_name_is_explained(gl):
    def uses_global(x):
        return len(x)

    with pytest.raises(ValueError, match="'len' is a global or attribute name there"):
        gl("len")(uses_global)


@pytest.mark.parametrize(
    "names, error, match",
    [
        ((), TypeError, "at least one variable"),
        ((3,), TypeError, "as str, not int"),
        ((["q", "k"],), TypeError, "separate arguments"),
        (("not valid",), ValueError, "not a valid Python variable name"),
        (("",), ValueError, "not a valid Python variable name"),
        (("q", "q"), ValueError, "'q' given more than once"),
    ],
)
def test_bad_names(gl, names, error, match):
    with pytest.raises(error, match=match):
        gl(*names)


def test_decorator_used_without_a_name(gl):
    with pytest.raises(TypeError, match=r"write @get_local\('attn_map'\), not @get_local"):

        @gl
        def f(x):
            return x


def test_capturing_again_with_other_names_is_refused(gl):
    def f(x):
        a = b = x
        return a + b

    gl("a")(f)
    assert gl("a")(f) is f  # the same names again: a no-op
    with pytest.raises(
        ValueError, match=r"already captured with get_local\('a'\); call get_local.undo\(f\) first"
    ):
        gl("b")(f)


def test_exceptions_propagate_unchanged_and_record_nothing(gl):
    class Boom(Exception):
        pass

    error = Boom("inside")

    @gl("attn")
    def f(fail):
        attn = 1
        if fail:
            raise error
        return attn

    gl.activate()
    with pytest.raises(Boom) as caught:
        f(True)
    assert caught.value is error
    f(False)
    assert gl.cache[gl.key_of(f)] == [1]


def failing(x, mode):
    attn = x * 2
    if mode == "early":
        return 1 / 0
    try:
        return [attn][mode]
    finally:
        attn = None


def formatted(func, *args):
    try:
        func(*args)
    except Exception as error:
        return traceback.format_exception(error)
    raise AssertionError("did not raise")


@pytest.mark.parametrize("args", [(1, "early"), (1, 5), (1, "key")])
def test_tracebacks_point_at_the_same_lines_and_columns(gl, args):
    before = formatted(failing, *args)
    gl("attn")(failing)
    gl.activate()
    after = formatted(failing, *args)
    assert after == before


def test_rewrite_failure_reports_the_disassembly(gl, monkeypatch):
    from visualizer._core import rewrite as _rewrite

    def broken(*args, **kwargs):
        raise RuntimeError("simulated bytecode failure")

    monkeypatch.setattr(_rewrite._Rewriter, "rewrite", broken)

    def fresh(x):
        y = x
        return y

    gl.activate()
    with pytest.raises(
        _rewrite.RewriteError, match=r"(?s)could not rewrite .*fresh.*simulated.*RETURN_VALUE"
    ):
        gl("y")(fresh)
    assert gl.cache.get(fresh.__qualname__) in (None, [])


def test_options_are_validated(gl):
    with pytest.raises(ValueError, match="store must be one of 'numpy', 'tensor', 'graph'"):
        gl.configure(store="cpu")
    for bad in (0, -3):
        with pytest.raises(ValueError, match="at least 1"):
            gl.configure(max_records=bad)
    for bad in (1.5, True, "10"):
        with pytest.raises(TypeError, match="positive int or None"):
            gl.configure(max_records=bad)
    assert gl.configure() == {"store": "numpy", "max_records": None}
