"""Contract 6, without torch: non-tensor values, containers, the bound, import weight."""

import collections
import subprocess
import sys

import pytest

from visualizer._core.records import convert


def test_non_tensor_values_are_stored_without_crashing(gl):
    marker = object()

    @gl("v")
    def f(v):
        return None

    gl.activate()
    values = [None, 3, 2.5, 1j, "s", b"b", True, marker, {"a": [1, (2, {3})]}, [], ()]
    for value in values:
        f(value)
    records = gl.cache[gl.key_of(f)]
    assert records == values
    assert records[7] is marker


def test_containers_are_snapshots_taken_at_return(gl):
    @gl("state")
    def f(state):
        state["seen"].append(1)
        return state

    gl.activate()
    live = {"seen": []}
    f(live)
    live["seen"].append("later")  # the caller changes it after the return
    assert gl.cache[gl.key_of(f)] == [{"seen": [1]}]


def test_container_types_are_kept():
    Point = collections.namedtuple("Point", "x y")
    factory = collections.defaultdict(list, a=[1])
    converted = convert(
        {"p": Point(1, 2), "d": factory, "o": collections.OrderedDict(b=2), "f": frozenset({1})}, "numpy"
    )
    assert type(converted["p"]) is Point and converted["p"] == (1, 2)
    assert type(converted["d"]) is collections.defaultdict and converted["d"]["new"] == []
    assert type(converted["o"]) is collections.OrderedDict
    assert converted["f"] == frozenset({1})


def test_self_referencing_containers_do_not_recurse_forever():
    loop = [1]
    loop.append(loop)
    converted = convert(loop, "numpy")
    assert converted[0] == 1 and converted[1] is loop


@pytest.mark.parametrize("bound", [1, 3])
def test_bounded_records_drop_the_oldest(gl, bound):
    @gl("v")
    def f(v):
        return v

    gl.configure(max_records=bound)
    gl.activate()
    for i in range(10):
        f(i)
    assert gl.cache[gl.key_of(f)] == list(range(10 - bound, 10))
    gl.configure(max_records=None)
    f(10)
    f(11)
    assert gl.cache[gl.key_of(f)] == list(range(10 - bound, 12))


def test_configure_returns_the_previous_options(gl):
    assert gl.configure(store="tensor", max_records=5) == {"store": "numpy", "max_records": None}
    assert gl.configure(store="graph") == {"store": "tensor", "max_records": 5}
    assert gl.configure(max_records=None) == {"store": "graph", "max_records": 5}


def test_import_visualizer_imports_no_heavy_framework():
    code = (
        "import sys, visualizer\n"
        "heavy = [m for m in ('torch', 'timm', 'transformers', 'matplotlib', 'numpy') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_public_surface_is_small():
    import visualizer

    assert visualizer.__all__ == [
        "CHANNELS",
        "TOKENS",
        "AttentionCapture",
        "AttentionMaps",
        "CaptureError",
        "CaptureWarning",
        "EditPointError",
        "Faithfulness",
        "HeadEffects",
        "HeadMeans",
        "HeadRecord",
        "Channels",
        "LayerInfo",
        "LayoutError",
        "Relevance",
        "RewriteError",
        "SurveyResult",
        "Tokens",
        "UsageError",
        "WeightsError",
        "Windows",
        "__version__",
        "ablate",
        "capture_attention",
        "explain",
        "faithfulness",
        "get_local",
        "head_effects",
        "head_means",
        "patch",
        "record_heads",
        "survey",
    ]
    lazy = {  # imported on first use: they need numpy and torch
        "survey",
        "SurveyResult",
        "ablate",
        "patch",
        "record_heads",
        "head_means",
        "head_effects",
        "HeadEffects",
        "HeadMeans",
        "HeadRecord",
        "explain",
        "faithfulness",
        "Relevance",
        "Faithfulness",
    }
    assert all(hasattr(visualizer, name) for name in visualizer.__all__ if name not in lazy)
    assert isinstance(visualizer.__version__, str)
    for name in lazy:
        try:
            getattr(visualizer, name)
        except ImportError as error:  # a core-only install: the error says which extra to install
            assert 'pip install -c constraints.txt "transformer-visualizer[models]"' in str(error)


def test_a_container_subclass_with_its_own_constructor_keeps_its_type_without_calling_it():
    class Pair(tuple):
        def __new__(cls, first, second):  # not callable with one iterable
            return super().__new__(cls, (first, second))

    original = Pair(1, [2])
    converted = convert(original, "numpy")
    assert type(converted) is Pair and converted == (1, [2]) and converted[1] is not original[1]


def test_options_take_effect_at_once_and_only_a_bound_change_rebinds(gl):
    @gl("v")
    def f(v):
        return v

    gl.activate()
    f(1)
    f(2)  # ints now take the bytecode fast path
    code = f.__code__
    gl.configure(store="tensor")
    with gl.activated():
        pass
    assert f.__code__ is code  # nothing that changes the binding: no rebind
    gl.configure(max_records=2)  # the bound must hold for the fast path too
    for i in range(3, 8):
        f(i)
    assert gl.cache[gl.key_of(f)] == [6, 7]
