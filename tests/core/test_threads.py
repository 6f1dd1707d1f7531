"""Contract 11: concurrent calls give exactly one record per completed call."""

import sys
import threading

import pytest

THREADS = 8
CALLS = 2000


@pytest.fixture(autouse=True)
def frequent_switches():
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    yield
    sys.setswitchinterval(previous)


def run_threads(target):
    start = threading.Barrier(THREADS)

    def worker(index):
        start.wait()
        for call in range(CALLS):
            target(index, call)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


@pytest.mark.parametrize("value_kind", ["int (fast path)", "tuple (converted)"])
def test_every_call_recorded_once(gl, value_kind):
    as_int = value_kind.startswith("int")

    @gl("v")
    def f(index, call):
        v = index * CALLS + call if as_int else (index, call)
        return None

    gl.activate()
    run_threads(f)
    records = gl.cache[gl.key_of(f)]
    expected = {i * CALLS + c if as_int else (i, c) for i in range(THREADS) for c in range(CALLS)}
    assert len(records) == THREADS * CALLS
    assert set(records) == expected
    # Within one thread, records keep their call order.
    mine = [r for r in records if (r // CALLS if as_int else r[0]) == 3]
    assert mine == sorted(mine)


def test_bounded_records_under_threads_keep_exactly_the_newest(gl):
    @gl("v")
    def f(index, call):
        v = (index, call)
        return None

    gl.configure(max_records=500)
    gl.activate()
    run_threads(f)
    records = gl.cache[gl.key_of(f)]
    assert len(records) == 500 and len(set(records)) == 500
    for call in range(500):  # then 500 more, in a known order: only these remain
        f(-1, call)
    assert records == [(-1, call) for call in range(500)]


def test_clear_while_threads_record_loses_nothing_after_it(gl):
    @gl("v")
    def f(index, call):
        v = call
        return None

    gl.activate()
    done = threading.Event()

    def clearer():
        while not done.is_set():
            gl.clear()

    thread = threading.Thread(target=clearer)
    thread.start()
    run_threads(f)
    done.set()
    thread.join()
    gl.clear()
    f(0, 0)
    assert gl.cache[gl.key_of(f)] == [0]


def test_activate_deactivate_and_clear_from_several_threads_do_not_deadlock(gl):
    funcs = []
    for index in range(20):

        def f(x, index=index):
            v = x + index
            return v

        funcs.append(gl("v")(f))
    originals = [func.__code__ for func in funcs]

    def toggler():
        for _ in range(200):
            gl.activate()
            gl.deactivate()

    def clearer():
        for _ in range(200):
            gl.clear()

    def caller():
        for call in range(2000):
            funcs[call % 20](call)

    threads = [threading.Thread(target=t) for t in (toggler, clearer, caller, toggler, clearer)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "deadlocked"
    gl.deactivate()
    assert all(func.__code__ is original for func, original in zip(funcs, originals))
