"""What captures and seams change lives in one registry of sessions (``visualizer._sessions``),
not in module globals: the capture's modules hold no mutable module-level state."""

import collections
import importlib
import pkgutil
import threading
import types
import weakref

import visualizer._adapters

#: The types of mutable state a module global must not hold (constants are tuples,
#: frozensets or MappingProxyType).
MUTABLE = (
    dict,
    list,
    set,
    bytearray,
    collections.deque,
    weakref.WeakKeyDictionary,
    weakref.WeakValueDictionary,
    weakref.WeakSet,
    threading.local,
    type(threading.Lock()),
    type(threading.RLock()),
    threading.Condition,
    threading.Event,
    threading.Semaphore,
)


def scanned() -> list[str]:
    names = ["visualizer._adapters", "visualizer._capture", "visualizer._maps", "visualizer._copy_guard"]
    names += [f"visualizer._adapters.{m.name}" for m in pkgutil.iter_modules(visualizer._adapters.__path__)]
    return names


def mutable_globals(module: types.ModuleType) -> list[str]:
    return sorted(
        f"{name} ({type(value).__name__})"
        for name, value in vars(module).items()
        if not (name.startswith("__") and name.endswith("__")) and isinstance(value, MUTABLE)
    )


def test_the_capture_modules_keep_no_mutable_state_in_globals():
    found = {}
    for name in scanned():
        module = importlib.import_module(name)
        if mutable_globals(module):
            found[name] = mutable_globals(module)
    assert len(scanned()) >= 15
    assert not found, f"mutable module-level state (put it in visualizer._sessions.SESSIONS): {found}"


def test_the_scan_finds_a_planted_global():
    planted = types.ModuleType("planted")
    planted._CACHE = {}
    planted._ORDER = []
    planted._LOCK = threading.Lock()
    planted._RLOCK = threading.RLock()
    planted._STATE = threading.local()
    planted._WATCHED = weakref.WeakKeyDictionary()
    planted.CONSTANT = types.MappingProxyType({"a": 1})
    planted.NAMES = ("a", "b")
    assert mutable_globals(planted) == [
        "_CACHE (dict)",
        "_LOCK (lock)",
        "_ORDER (list)",
        "_RLOCK (RLock)",
        "_STATE (_local)",
        "_WATCHED (WeakKeyDictionary)",
    ]


def test_one_registry_of_sessions_owns_what_they_change():
    from visualizer._sessions import SESSIONS, Registry

    registry = Registry()
    module, config = types.SimpleNamespace(), types.SimpleNamespace()
    first = registry.part(module, "hooks", list)
    assert registry.part(module, "hooks", list) is first and registry.get(config, "hooks") is None
    registry.part(config, "held x", lambda: [1, 0])
    assert len(registry) == 2 and registry.holders("hooks") == [module]
    registry.drop(module, "hooks", part=[])  # not that part: kept
    assert registry.get(module, "hooks") is first
    registry.drop(module, "hooks")
    assert len(registry) == 1
    undone = []
    release = registry.acquire("patch", lambda: lambda: undone.append(True))
    again = registry.acquire("patch", lambda: lambda: undone.append("second install"))
    release()
    release()  # idempotent
    assert registry.patched("patch") and not undone
    again()
    assert undone == [True] and not registry.patched("patch")
    assert isinstance(SESSIONS, Registry)
