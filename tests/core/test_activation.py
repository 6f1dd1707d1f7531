"""Contract 1-3: zero overhead while inactive, activation at any time, in-place capture."""

import importlib
import sys
import textwrap

import pytest

from visualizer import get_local


def make_function():
    def attention(x):
        attn = x * 2
        return attn + 1

    return attention


def test_inactive_decorator_returns_the_function_itself_with_its_code_untouched(gl):
    func = make_function()
    code = func.__code__
    assert gl("attn")(func) is func
    assert func.__code__ is code
    assert func(1) == 3
    assert gl.cache == {}


def test_active_decorator_also_returns_the_same_object(gl):
    gl.activate()
    func = make_function()
    assert gl("attn")(func) is func
    assert func(1) == 3
    assert gl.cache == {"make_function.<locals>.attention": [2]}


def test_activation_after_decoration_captures_objects_already_held_elsewhere(gl):
    func = make_function()
    gl("attn")(func)
    holders = {"in_a_dict": func, "in_a_list": [func]}

    class Model:
        forward = staticmethod(func)

    gl.activate()
    holders["in_a_dict"](1)
    holders["in_a_list"][0](2)
    Model.forward(3)
    assert gl.cache["make_function.<locals>.attention"] == [2, 4, 6]


def test_deactivate_restores_the_original_code_object_and_activate_resumes(gl):
    func = make_function()
    original = func.__code__
    gl("attn")(func)
    gl.activate()
    assert func.__code__ is not original
    func(1)
    gl.deactivate()
    assert func.__code__ is original
    func(5)
    gl.activate()
    func(7)
    assert gl.cache["make_function.<locals>.attention"] == [2, 14]
    assert gl.is_activate


def test_is_activate_can_be_assigned_like_the_original_attribute(gl):
    func = gl("attn")(make_function())
    gl.is_activate = True
    func(1)
    gl.is_activate = False
    func(1)
    assert gl.cache["make_function.<locals>.attention"] == [2]
    assert gl.is_activate is False


def test_scoped_activation_restores_previous_state_and_options_even_on_error(gl):
    func = gl("attn")(make_function())
    code = func.__code__
    with pytest.raises(RuntimeError, match="boom"):
        with gl.activated(max_records=1) as cache:
            func(1)
            func(2)
            assert cache is gl.cache
            raise RuntimeError("boom")
    assert func.__code__ is code
    assert not gl.is_activate
    assert gl.configure() == {"store": "numpy", "max_records": None}
    assert gl.cache["make_function.<locals>.attention"] == [4]


def test_scoped_activation_inside_active_state_leaves_it_active(gl):
    func = gl("attn")(make_function())
    gl.activate()
    with gl.activated():
        func(1)
    func(2)
    assert gl.is_activate
    assert gl.cache["make_function.<locals>.attention"] == [2, 4]


LIBRARY = """
def helper(x):
    hidden = x - 1
    return hidden * 10

class Attention:
    def forward(self, x):
        attn = x + 100
        return helper(attn)
"""


@pytest.fixture
def third_party(tmp_path, monkeypatch):
    """A module installed on sys.path, imported before any capture exists."""
    (tmp_path / "fake_library.py").write_text(textwrap.dedent(LIBRARY))
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("fake_library")
    yield module
    sys.modules.pop("fake_library", None)


def test_in_place_capture_of_third_party_code_and_undo(gl, third_party):
    instance = third_party.Attention()  # created before any capture
    forward_code = third_party.Attention.forward.__code__
    assert gl("attn")(third_party.Attention.forward) is third_party.Attention.forward
    gl("hidden")(third_party.helper)
    gl.activate()
    assert instance.forward(1) == 1000
    assert gl.cache == {"Attention.forward": [101], "helper": [100]}
    gl.undo(third_party.Attention.forward)
    assert third_party.Attention.forward.__code__ is forward_code
    instance.forward(2)
    assert gl.cache == {"Attention.forward": [101], "helper": [100, 101]}
    with pytest.raises(ValueError, match="is not captured"):
        gl.undo(third_party.Attention.forward)


def test_undo_of_an_inactive_capture_keeps_the_code_and_forgets_it(gl, third_party):
    code = third_party.helper.__code__
    gl("hidden")(third_party.helper)
    gl.undo(third_party.helper)
    gl.activate()
    third_party.helper(1)
    assert third_party.helper.__code__ is code
    assert gl.cache.get("helper", []) == []


def test_the_original_usage_with_the_public_object(public_get_local, tmp_path, monkeypatch):
    """Activate, then import a model whose forward is decorated, as the original README does."""
    (tmp_path / "mymodel.py").write_text(
        textwrap.dedent(
            """
            from visualizer import get_local

            class Attention:
                @get_local("attn_map")
                def forward(self, x):
                    attn_map = [v / sum(x) for v in x]
                    return sum(a * v for a, v in zip(attn_map, x))
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    get_local.activate()
    try:
        from mymodel import Attention

        model = Attention()
        model.forward([1, 1])
        model.forward([1, 3])
        assert get_local.cache == {"Attention.forward": [[0.5, 0.5], [0.25, 0.75]]}
        get_local.clear()
        assert get_local.cache == {"Attention.forward": []}
    finally:
        sys.modules.pop("mymodel", None)


def test_code_replaced_by_someone_else_is_left_alone_with_a_warning(gl):
    from visualizer import CaptureWarning

    func = gl("attn")(make_function())
    gl.activate()
    replaced = func.__code__ = make_function().__code__  # another tool swapped it meanwhile
    with pytest.warns(CaptureWarning, match="replaced by someone else"):
        gl.deactivate()
    assert func.__code__ is replaced
