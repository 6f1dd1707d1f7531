"""Taps: raw values for capture_attention, sharing one instrumentation with the user's get_local."""

import warnings

import pytest

from visualizer import CaptureWarning


def make_function():
    def attention(x, assign=True):
        if assign:
            attn = x * 2
        return x

    return attention


def open_tap(gl, func, names=("attn",)):
    seen, missed = [], []
    tap = gl._tap(func, names, seen.append, missed.append)
    return tap, seen, missed


def test_a_tap_receives_raw_values_without_activation_and_leaves_the_cache_alone(gl):
    func = make_function()
    original = func.__code__
    tap, seen, _ = open_tap(gl, func)
    assert func.__code__ is not original
    marker = object()  # not converted, not copied: the very object
    func([marker])
    func(3)
    assert seen[0][0] is marker and seen[1] == 6
    assert dict(gl.cache) == {} and not gl.is_activate
    tap.close()
    assert func.__code__ is original
    func(4)
    assert len(seen) == 2


def test_a_tap_reports_unassigned_variables_without_a_get_local_warning(gl):
    func = make_function()
    tap, seen, missed = open_tap(gl, func)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CaptureWarning)
        func(1, assign=False)
    assert seen == [] and missed == [["attn"]]
    tap.close()


def test_user_capture_and_a_tap_both_get_every_value(gl):
    func = make_function()
    gl("attn")(func)
    gl.activate()
    func(1)  # first int record turns the user's bytecode fast path on
    tap, seen, _ = open_tap(gl, func)
    func(2)
    func(3)
    assert seen == [4, 6]  # the fast path would have bypassed the tap
    assert gl.cache[gl.key_of(func)] == [2, 4, 6]
    tap.close()
    func(4)
    assert gl.cache[gl.key_of(func)] == [2, 4, 6, 8]
    assert seen == [4, 6]


def test_deactivating_or_undoing_the_user_capture_keeps_an_open_tap_working(gl):
    func = make_function()
    original = func.__code__
    gl("attn")(func)
    key = gl.key_of(func)
    gl.activate()
    tap, seen, _ = open_tap(gl, func)
    gl.deactivate()
    func(1)
    gl.undo(func)
    func(2)
    assert seen == [2, 4]
    assert gl.cache[key] == []
    with pytest.raises(ValueError, match="not captured by get_local"):
        gl.key_of(func)
    tap.close()
    assert func.__code__ is original


def test_decorating_a_tapped_function_adopts_it(gl):
    func = make_function()
    tap, seen, _ = open_tap(gl, func)
    gl("attn")(func)
    func(1)  # inactive: only the tap sees it
    gl.activate()
    func(2)
    assert seen == [2, 4]
    assert gl.cache[gl.key_of(func)] == [4]
    tap.close()
    func(3)
    assert gl.cache[gl.key_of(func)] == [4, 6]


def test_two_taps_on_one_function_and_closing_twice(gl):
    func = make_function()
    original = func.__code__
    first, seen_first, _ = open_tap(gl, func)
    second, seen_second, _ = open_tap(gl, func)
    func(1)
    first.close()
    first.close()  # harmless
    func(2)
    assert seen_first == [2] and seen_second == [2, 4]
    second.close()
    assert func.__code__ is original


def test_a_tap_with_other_names_than_the_user_capture_is_refused(gl):
    def attention(x):
        attn = x
        other = x
        return attn + other

    gl("attn")(attention)
    with pytest.raises(ValueError, match=r"captured with get_local\('attn'\).*undo"):
        gl._tap(attention, ("other",), print, print)


def test_decorating_with_other_names_than_an_open_tap_is_refused(gl):
    def attention(x):
        attn = x
        other = x
        return attn + other

    tap = gl._tap(attention, ("attn",), print, print)
    with pytest.raises(ValueError, match="being captured by capture_attention"):
        gl("other")(attention)
    tap.close()


def test_tapped_only_functions_are_not_counted_as_captured(gl):
    func = make_function()
    tap, _, _ = open_tap(gl, func)
    assert "0 functions" in repr(gl)
    tap.close()
