"""Contract 8: locals, arguments, cells, free variables; unassigned variables never crash."""

import pytest

from visualizer import CaptureWarning


def test_arguments_are_recorded_with_their_value_at_return(gl):
    @gl("x", "scale")
    def f(x, *, scale=2):
        x = x * scale
        return x

    gl.activate()
    f(3)
    f(3, scale=5)
    assert list(gl.cache.values()) == [[(6, 2), (15, 5)]]


def test_cell_variables_record_the_value_not_the_cell(gl):
    @gl("acc", "x")
    def f(x):
        acc = []

        def add(v):
            acc.append(v)

        add(x)
        x = x + 1  # an argument that is also a cell
        add(x)

        def read():
            return x

        return read()

    gl.activate()
    assert f(1) == 2
    [(acc, x)] = next(iter(gl.cache.values()))
    assert acc == [1, 2] and x == 2


def test_free_variables_of_a_closure(gl):
    def outer(base):
        @gl("base", "y")
        def inner(v):
            y = v + base
            return y

        return inner

    gl.activate()
    assert outer(10)(1) == 11
    assert outer(20)(2) == 22
    assert list(gl.cache.values()) == [[(10, 11), (20, 22)]]


def test_unassigned_local_records_nothing_and_warns_once(gl):
    @gl("attn")
    def forward(x, fused):
        if fused:
            out = x * 2
        else:
            attn = x / 2
            out = attn * 4
        return out

    gl.activate()
    with pytest.warns(CaptureWarning) as caught:
        assert forward(1, fused=True) == 2
        assert forward(1, fused=True) == 2
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "forward" in message and "'attn'" in message and "nothing was recorded" in message
    assert "branch that assigns" in message and "Fix:" in message
    assert caught[0].filename == __file__  # points at the user's function
    assert forward(1, fused=False) == 2
    assert gl.cache[gl.key_of(forward)] == [0.5]
    assert gl.misses(forward) == 2


def test_fused_attention_is_named_as_the_likely_cause(gl):
    class Attention:
        fused_attn = True

        @gl("attn")
        def forward(self, q, k):
            if self.fused_attn:
                return scaled_dot_product_attention(q, k)  # noqa: F821 - never called
            attn = q * k
            return attn

    Attention.fused_attn = False
    gl.activate()
    Attention().forward(2, 3)
    Attention.fused_attn = True
    Attention.forward.__globals__["scaled_dot_product_attention"] = lambda q, k: q + k
    try:
        with pytest.warns(
            CaptureWarning, match=r"fused attention.*fused_attn = False.*set_attn_implementation"
        ):
            assert Attention().forward(2, 3) == 5
    finally:
        del Attention.forward.__globals__["scaled_dot_product_attention"]
    assert gl.cache[gl.key_of(Attention.forward)] == [6]


def test_deleted_variable_is_treated_as_unassigned(gl):
    @gl("tmp")
    def f(x):
        tmp = x * 3
        result = tmp + 1
        del tmp
        return result

    gl.activate()
    with pytest.warns(CaptureWarning, match="'tmp'"):
        assert f(1) == 4
    assert gl.cache[gl.key_of(f)] == []


def test_unassigned_cell_variable(gl):
    @gl("cell")
    def f(assign):
        if assign:
            cell = "set"

        def reader():
            return cell

        return reader if assign else None

    gl.activate()
    with pytest.warns(CaptureWarning, match="'cell'"):
        assert f(False) is None
    assert f(True)() == "set"
    assert gl.cache[gl.key_of(f)] == ["set"]


def test_free_variable_assigned_after_the_call_is_reported_not_crashed(gl):
    def outer():
        @gl("late")
        def inner(read=False):
            if read:
                return late  # makes 'late' a free variable of inner
            return "ran"

        first = inner()
        late = "bound"
        second = inner()
        return first, second, late

    gl.activate()
    with pytest.warns(CaptureWarning, match="'late'"):
        assert outer()[:2] == ("ran", "ran")
    assert list(gl.cache.values()) == [["bound"]]


def test_one_of_several_names_unassigned_records_nothing_for_that_call(gl):
    @gl("a", "b")
    def f(both):
        a = 1
        if both:
            b = 2
        return a

    gl.activate()
    with pytest.warns(CaptureWarning, match="'b'") as caught:
        f(False)
    assert "'a'" not in str(caught[0].message).split("value for")[1].split(",")[0]
    f(True)
    assert list(gl.cache.values()) == [[(1, 2)]]


def test_locals_and_unbound_local_error_behave_as_without_capture(gl):
    @gl("y")
    def f(flag):
        if flag:
            y = 1
        seen = dict(locals())
        try:
            return y, seen
        except UnboundLocalError as error:
            return str(error), seen

    gl.activate()
    with pytest.warns(CaptureWarning):
        message, seen = f(False)
    assert "y" in message and seen == {"flag": False}  # no sentinel stored in the frame
    assert f(True) == (1, {"flag": True, "y": 1})


def test_a_function_returning_at_the_recursion_limit_behaves_as_without_capture(gl):
    """The recorder is one more frame: at the limit it may cost a record, never the call."""
    import sys

    @gl("marker")
    def nest(depth):
        marker = [depth]  # a list: recorded through the Python-level recorder, not the fast path
        if depth == 0:
            return marker
        return nest(depth - 1)

    def deepest_that_works():
        low, high = 1, 5000
        while low < high:
            middle = (low + high + 1) // 2
            try:
                nest(middle)
                low = middle
            except RecursionError:
                high = middle - 1
        return low

    previous = sys.getrecursionlimit()
    sys.setrecursionlimit(300)
    try:
        limit = deepest_that_works()
        gl.activate()
        assert nest(limit) == [0]  # raised RecursionError before the fix
    finally:
        sys.setrecursionlimit(previous)
    records = gl.cache[gl.key_of(nest)]
    assert limit - 3 <= len(records) <= limit + 1  # only calls at the very edge may go unrecorded
    assert records == [[depth] for depth in range(limit + 1 - len(records), limit + 1)]
