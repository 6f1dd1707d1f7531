"""Contract 4-5: the cache dict, its keys, clear(), several names, direct mutation."""

import copy
import pickle
import textwrap

import pytest

from visualizer import CaptureWarning


@pytest.fixture
def echo(gl):
    """An active capture of a function that records its argument as ``y``."""

    @gl("y")
    def echo(x):
        y = x
        return y

    gl.activate()
    return echo


def test_one_record_per_completed_call_in_call_order(gl):
    @gl("y")
    def f(x):
        y = x * x
        return y

    gl.activate()
    for i in range(5):
        f(i)
    assert gl.cache == {"test_one_record_per_completed_call_in_call_order.<locals>.f": [0, 1, 4, 9, 16]}
    assert type(gl.cache) is not dict and isinstance(gl.cache, dict)


def test_keys_are_qualnames_of_methods(gl):
    class Attention:
        @gl("attn")
        def forward(self, x):
            attn = x + 1
            return attn

    gl.activate()
    Attention().forward(1)
    assert list(gl.cache) == ["test_keys_are_qualnames_of_methods.<locals>.Attention.forward"]


def test_clear_empties_the_cache_but_lists_taken_before_keep_their_records(gl, echo):
    echo(1)
    echo(2)
    taken = gl.cache[gl.key_of(echo)]
    gl.clear()
    echo(3)
    assert taken == [1, 2]
    assert list(gl.cache.values()) == [[3]]


def test_an_undone_function_keeps_its_records_until_clear_then_its_key_goes(gl, echo):
    key = gl.key_of(echo)
    echo(1)
    gl.undo(echo)
    assert gl.cache[key] == [1]
    gl.clear()
    assert key not in gl.cache
    gl("y")(echo)  # captured again: the key comes back with new records
    echo(2)
    assert gl.cache[key] == [2]


def test_several_names_record_a_tuple_per_call(gl):
    @gl("q", "k")
    def f(x):
        q = x + 1
        k = x + 2
        return q * k

    gl.activate()
    f(0)
    f(1)
    assert list(gl.cache.values()) == [[(1, 2), (2, 3)]]


def write_module(tmp_path, name, body):
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(body))
    return path


def test_same_qualname_in_two_modules_get_separate_keys(gl, tmp_path, monkeypatch):
    source = """
        class Attention:
            def forward(self, x):
                attn = x * {factor}
                return attn
    """
    write_module(tmp_path, "model_a", source.format(factor=1))
    write_module(tmp_path, "model_b", source.format(factor=-1))
    monkeypatch.syspath_prepend(str(tmp_path))
    import model_a
    import model_b

    gl("attn")(model_a.Attention.forward)
    with pytest.warns(CaptureWarning, match="records go under 'model_b.Attention.forward'"):
        gl("attn")(model_b.Attention.forward)
    gl.activate()
    model_a.Attention().forward(1)
    model_b.Attention().forward(2)
    model_a.Attention().forward(3)
    assert gl.cache == {"Attention.forward": [1, 3], "model_b.Attention.forward": [-2]}
    assert gl.key_of(model_a.Attention.forward) == "Attention.forward"
    assert gl.key_of(model_b.Attention.forward) == "model_b.Attention.forward"


def test_redefinition_in_the_same_module_shares_the_key(gl):
    """A notebook cell run twice defines the function again: its records join the same list."""
    source = "def f(x):\n    y = x\n    return y\n"
    namespace = {"__name__": "notebook"}
    exec(source, namespace)
    first = gl("y")(namespace["f"])
    exec(source, namespace)
    second = gl("y")(namespace["f"])
    gl.activate()
    first(1)
    second(2)
    assert gl.cache == {"f": [1, 2]}


def test_assigning_a_list_makes_it_the_list_appended_to(gl, echo):
    echo(1)
    key = gl.key_of(echo)
    mine = []
    gl.cache[key] = mine
    echo(2)
    echo(3)
    assert gl.cache[key] is mine and mine == [2, 3]
    with pytest.raises(TypeError, match="must be a list"):
        gl.cache[key] = "not a list"


@pytest.mark.parametrize("remove", ["del", "pop", "popitem", "clear"])
def test_a_deleted_key_comes_back_with_the_next_record(gl, echo, remove):
    echo(1)
    key = gl.key_of(echo)
    if remove == "del":
        del gl.cache[key]
    elif remove == "pop":
        assert gl.cache.pop(key) == [1]
    elif remove == "popitem":
        assert gl.cache.popitem() == (key, [1])
    else:
        gl.cache.clear()
    assert key not in gl.cache
    echo(2)
    echo(3)
    assert gl.cache == {key: [2, 3]}


def test_update_and_setdefault_keep_capture_in_step(gl, echo):
    key = gl.key_of(echo)
    replacement = [0]
    gl.cache.update({key: replacement})
    echo(1)
    assert replacement == [0, 1]
    assert gl.cache.setdefault(key, []) is replacement
    gl.cache |= {"unrelated": 5}
    assert gl.cache["unrelated"] == 5


def test_copies_and_pickles_are_plain(gl):
    @gl("y")
    def f(x):
        y = [x]
        return y

    gl.activate()
    f(1)
    key = gl.key_of(f)
    for shallow in (gl.cache.copy(), copy.copy(gl.cache)):
        assert type(shallow) is dict and shallow[key] is gl.cache[key]
    for deep in (copy.deepcopy(gl.cache), pickle.loads(pickle.dumps(gl.cache))):
        assert type(deep) is dict and type(deep[key]) is list
        assert deep == {key: [[1]]} and deep[key] is not gl.cache[key]
    assert type(pickle.loads(pickle.dumps(gl.cache[key]))) is list
    assert type(copy.copy(gl.cache[key])) is list


def test_assigning_the_cache_empties_it_as_the_original_did(gl):
    @gl("x")
    def f(v):
        x = v
        return x

    with gl.activated():
        f(1)
        taken = gl.cache[gl.key_of(f)]
        gl.cache = {}  # the original tool's way to empty its cache
        assert gl.cache == {gl.key_of(f): []} and taken == [1]  # lists taken before keep their records
        f(2)
        gl.cache = {"mine": [0]}  # a dict's items are put in, as if it were the new cache
        f(3)
    assert gl.cache == {gl.key_of(f): [3], "mine": [0]}
    with pytest.raises(
        TypeError, match=r"takes a dict \(\{\} empties the cache, as get_local.clear\(\) does\)"
    ):
        gl.cache = None
