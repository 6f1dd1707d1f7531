"""Converting a record never runs the value's own code, and never records again.

Records of list, tuple, set and dict subclasses used to be rebuilt with ``type(value)(items)``,
which runs the subclass's constructor: if that constructor is captured, it recorded again,
recursively (about 150 records for one call; 41,252 for a nested one; a hang when the whole
``email`` package was captured).
"""

import collections
import subprocess
import sys
import textwrap

import pytest

from visualizer._core.records import convert


class Traced(list):
    calls = 0

    def __init__(self, *args):
        Traced.calls += 1
        super().__init__(*args)


def test_one_record_per_completed_call_of_a_captured_list_subclass_constructor(gl):
    gl("self")(Traced.__init__)
    gl.activate()
    Traced.calls = 0
    Traced([1])
    assert len(gl.cache["Traced.__init__"]) == 1 and Traced.calls == 1
    gl.clear()
    Traced.calls = 0
    Traced([Traced([i]) for i in range(3)])
    assert len(gl.cache["Traced.__init__"]) == 4 and Traced.calls == 4
    # The records are snapshots of the right type, holding what self held at the return.
    assert [type(r) for r in gl.cache["Traced.__init__"]] == [Traced] * 4
    assert gl.cache["Traced.__init__"][-1] == [[0], [1], [2]]


class Loud:
    """Subclass methods that must never run during a conversion."""

    def __new__(cls, *args, **kwargs):
        raise AssertionError(f"{cls.__name__}.__new__ ran")

    def __init__(self, *args, **kwargs):
        raise AssertionError(f"{type(self).__name__}.__init__ ran")

    def __setitem__(self, key, value):
        raise AssertionError("__setitem__ ran")


@pytest.mark.parametrize("base", [list, tuple, set, frozenset, dict, collections.OrderedDict])
def test_conversion_runs_no_method_of_the_subclass(base):
    kind = type(f"Loud{base.__name__}", (Loud, base), {})
    items = [("a", [1]), ("b", [2])] if issubclass(base, dict) else [(1,), (2,)]
    value = base.__new__(kind) if base not in (tuple, frozenset) else base.__new__(kind, items)
    if base in (list, set):
        base.__init__(value, items)
    elif issubclass(base, dict):
        for key, item in items:
            base.__setitem__(value, key, item)
    value.note = "kept"
    converted = convert(value, "numpy")
    assert type(converted) is kind and converted.note == "kept"
    assert (dict(converted) if issubclass(base, dict) else sorted(converted)) == (
        dict(items) if issubclass(base, dict) else sorted(items)
    )


def test_instance_attributes_that_held_an_item_hold_its_converted_copy():
    np = pytest.importorskip("numpy")

    class Output(collections.OrderedDict):  # like transformers' ModelOutput: fields twice
        pass

    array = np.zeros(3)
    out = Output(attn=array)
    out.attn = array
    converted = convert(out, "numpy")
    assert converted["attn"] is converted.attn and converted.attn is not array
    assert np.array_equal(converted.attn, array)
    empty = collections.defaultdict(list, a=[array])
    copied = convert(empty, "numpy")
    assert copied.default_factory is list and copied["a"][0] is not array


def test_capturing_every_function_of_the_email_package_parses_a_message_as_before(tmp_path):
    """The case that hung: a subprocess, so a regression fails on the timeout instead of hanging CI."""
    script = textwrap.dedent(
        """
        import email, email.policy, importlib, inspect, pkgutil, sys, types, warnings
        from visualizer._core import GetLocal

        warnings.simplefilter("ignore")  # qualnames shared between email's modules

        TEXT = "From: a@b.c\\nTo: d@e.f\\nSubject: hi\\nContent-Type: text/plain\\n\\nbody " * 1
        def parse():
            message = email.message_from_string(TEXT, policy=email.policy.default)
            return message["subject"], message.get_content(), message.as_string()

        gl = GetLocal()
        captured = 0
        codes = set()
        for info in pkgutil.iter_modules(email.__path__, "email."):
            module = importlib.import_module(info.name)
            for value in list(vars(module).values()):
                members = vars(value).values() if isinstance(value, type) else [value]
                for member in members:
                    func = getattr(member, "__func__", member)
                    if not isinstance(func, types.FunctionType) or func.__module__ != module.__name__:
                        continue
                    names = func.__code__.co_varnames[:1]
                    if names:
                        try:
                            gl(*names)(func)
                            codes.add(func.__code__)
                            captured += 1
                        except Exception:
                            pass
        calls = 0
        def count(frame, event, arg):
            global calls
            if event == "call" and frame.f_code in codes:
                calls += 1
        sys.setprofile(count)  # captured but inactive: the original code runs
        before = parse()
        sys.setprofile(None)
        gl.activate()
        after = parse()
        gl.deactivate()
        records = sum(len(v) for v in gl.cache.values())
        print(captured, calls, records, after == before)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    captured, calls, records, same = done.stdout.split()
    # One record per completed call at most (a call that raised records nothing); before the
    # fix there were 183,619 records for about 400 calls.
    assert int(captured) > 300 and same == "True", done.stdout + done.stderr
    assert 0.5 * int(calls) <= int(records) <= int(calls), done.stdout


def test_a_function_captured_anew_after_undo_starts_with_no_records(gl):
    def f(x):
        attn = x * 2
        return attn

    gl("attn")(f)
    key = gl.key_of(f)
    with gl.activated() as cache:
        for i in range(12):
            f(i)
    earlier = cache[key]
    gl.undo(f)
    assert len(gl.cache[key]) == 12  # undo loses nothing
    gl("attn")(f)
    with gl.activated() as cache:
        pass
    assert cache.get(key, []) == [] and len(earlier) == 12  # the list handed out keeps its records
    with gl.activated() as cache:
        f(1)
    assert cache[key] == [2]


def test_cprofile_counts_every_call_of_a_captured_function(tmp_path):
    """The code used to change after the first record (the fast path), and pstats dropped that call."""
    script = textwrap.dedent(
        """
        import cProfile, io, pstats
        from visualizer._core import GetLocal

        gl = GetLocal()

        def scaled(x):
            y = x * 2
            return y

        gl("y")(scaled)
        profile = cProfile.Profile()
        profile.enable()
        gl.activate()
        for i in range(8):
            scaled(i)
        profile.disable()
        stats = pstats.Stats(profile)
        [calls] = [v[1] for k, v in stats.stats.items() if k[2] == "scaled"]
        print(calls, len(gl.cache["scaled"]))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.split() == ["8", "8"], done.stdout + done.stderr
