"""Contract 9: every kind of function, each compared against an undecorated original."""

import asyncio
import functools
import inspect
import math

import pytest


def records(gl, func):
    return gl.cache[gl.key_of(func)]


def test_plain_function_keeps_name_doc_signature_and_behaviour(gl):
    def original(a, b=2, *args, c, **kw):
        """Doc."""
        total = a + b + sum(args) + c + sum(kw.values())
        return total

    decorated = gl("total")(original)
    gl.activate()
    assert decorated is original
    assert (decorated.__name__, decorated.__doc__) == ("original", "Doc.")
    assert str(inspect.signature(decorated)) == "(a, b=2, *args, c, **kw)"
    assert decorated(1, 2, 3, c=4, d=5) == 15
    assert records(gl, original) == [15]


@pytest.mark.parametrize("order", ["above", "below"])
def test_classmethod_and_staticmethod(gl, order):
    if order == "above":

        class Model:
            scale = 3

            @gl("out")
            @classmethod
            def build(cls, x):
                out = x * cls.scale
                return out

            @gl("out")
            @staticmethod
            def helper(x):
                out = x - 1
                return out

    else:

        class Model:
            scale = 3

            @classmethod
            @gl("out")
            def build(cls, x):
                out = x * cls.scale
                return out

            @staticmethod
            @gl("out")
            def helper(x):
                out = x - 1
                return out

    gl.activate()
    assert Model.build(2) == 6 and Model().build(1) == 3
    assert Model.helper(5) == 4 and Model().helper(1) == 0
    assert records(gl, Model.build) == [6, 3]
    assert records(gl, Model.helper) == [4, 0]
    assert isinstance(Model.__dict__["build"], classmethod)
    assert isinstance(Model.__dict__["helper"], staticmethod)


@pytest.mark.parametrize("order", ["above", "below"])
def test_property_getter(gl, order):
    if order == "above":

        class Box:
            def __init__(self, w):
                self.w = w

            @gl("area")
            @property
            def area(self):
                area = self.w**2
                return area

    else:

        class Box:
            def __init__(self, w):
                self.w = w

            @property
            @gl("area")
            def area(self):
                area = self.w**2
                return area

    gl.activate()
    assert Box(3).area == 9
    assert records(gl, Box.area) == [9]


def test_bound_method_captures_the_class_function(gl):
    class Layer:
        def forward(self, x):
            h = x + 1
            return h

    first, second = Layer(), Layer()
    assert gl("h")(first.forward).__self__ is first
    gl.activate()
    first.forward(1)
    second.forward(10)
    assert records(gl, Layer.forward) == [2, 11]


def test_nested_closures_made_in_a_loop(gl):
    gl.activate()
    made = []
    for scale in range(3):

        @gl("y")
        def scaled(x, scale=scale):
            y = x * scale
            return y

        made.append(scaled)
    assert [f(2) for f in made] == [0, 2, 4]
    assert records(gl, made[0]) == [0, 2, 4]
    assert made[0].__code__ is not made[1].__code__  # each function object holds its own


def uppercase_result(func):
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        result = func(*args, **kwargs)
        return result.upper()

    return wrapper


@pytest.mark.parametrize("order", ["above", "below"])
def test_function_wrapped_by_another_decorator(gl, order):
    def greet(name):
        greeting = f"hello {name}"
        return greeting

    if order == "above":
        decorated = gl("greeting")(uppercase_result(greet))
    else:
        decorated = uppercase_result(gl("greeting")(greet))
    gl.activate()
    assert decorated("ann") == "HELLO ANN"
    assert records(gl, decorated) == ["hello ann"]
    assert gl.key_of(decorated) == gl.key_of(greet)


def test_wrapper_variable_is_found_when_the_inner_function_lacks_it(gl):
    def inner(x):
        return x + 1

    decorated = gl("result")(_counting(inner))  # 'result' exists only in the wrapper
    gl.activate()
    assert decorated(1) == 2
    assert gl.cache[gl.key_of(decorated)] == [2]


def _counting(func):
    @functools.wraps(func)
    def counting(*args):
        result = func(*args)
        return result

    return counting


def test_recursive_function_records_every_call_as_it_completes(gl):
    @gl("value")
    def factorial(n):
        value = 1 if n <= 1 else n * factorial(n - 1)
        return value

    gl.activate()
    assert factorial(4) == 24
    assert records(gl, factorial) == [1, 2, 6, 24]  # innermost call completes first


def test_lambda(gl):
    square = gl("x")(lambda x: x * x)
    gl.activate()
    assert square(3) == 9
    assert gl.cache == {"test_lambda.<locals>.<lambda>": [3]}


def test_zero_argument_super(gl):
    class Base:
        def forward(self, x):
            return x + 1

    class Child(Base):
        @gl("parent")
        def forward(self, x):
            parent = super().forward(x)
            return parent * 2

    gl.activate()
    assert Child().forward(1) == 4
    assert records(gl, Child.forward) == [2]


def test_generator_records_at_completion_only(gl):
    @gl("total")
    def running(items):
        total = 0
        for item in items:
            total += item
            yield total
        return "done"

    gl.activate()
    assert list(running([1, 2, 3])) == [1, 3, 6]
    unfinished = running([5, 5])
    next(unfinished)
    unfinished.close()  # closed early: no completion, no record
    assert records(gl, running) == [6]


def test_coroutine_records_when_it_returns(gl):
    @gl("answer")
    async def compute(x):
        await asyncio.sleep(0)
        answer = x * 7
        return answer

    gl.activate()
    assert asyncio.run(compute(6)) == 42
    assert records(gl, compute) == [42]


def test_async_generator_is_refused_with_guidance(gl):
    async def stream():
        value = 1
        yield value

    with pytest.raises(TypeError, match="async generator"):
        gl("value")(stream)


@pytest.mark.parametrize(
    "target, expected",
    [
        (len, "builtin"),
        (math.sqrt, "builtin"),
        ([].append, "builtin"),
        (str.upper, "builtin"),
        (int, "class int"),
        (functools.partial(print), "builtin"),
    ],
)
def test_builtins_and_classes_get_a_clear_error(gl, target, expected):
    with pytest.raises(TypeError, match=expected):
        gl("x")(target)


def test_callable_instance_gets_told_what_to_decorate(gl):
    class Module:
        def __call__(self, x):
            return x

    with pytest.raises(TypeError, match=r"instance of .*Module.*decorate its method"):
        gl("x")(Module())


def test_partial_is_followed_to_its_function(gl):
    def scale(x, factor):
        y = x * factor
        return y

    double = functools.partial(scale, factor=2)
    assert gl("y")(double) is double
    gl.activate()
    assert double(4) == 8
    assert records(gl, scale) == [8]
