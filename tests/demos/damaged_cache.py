"""The cache tests of the trained demos (induction, keywords, shapes), which share one cache
(``visualizer.demos._cached``): each way to damage a file, and what the demo must do about it.

>>> cache = cache_folder("keywords-cache")          # a module's fixture: its own VISUALIZER_CACHE
>>> @pytest.mark.parametrize("damage, why", damages("classifier.weight", "transformers", "parameters"))
... def test_a_damaged_cache_is_trained_again_with_a_warning(damage, why, ...):
...     check_retrained(damage, why, "keyword", cache=_keywords._CACHE, settings=..., load=...)
"""

import re
import warnings

import pytest

from visualizer._errors import CaptureWarning
from visualizer.models._cache import content_sha256, read_arrays, write_arrays


def cache_folder(name: str):
    """A module-scoped fixture: a weight cache folder of the module's own, set as ``VISUALIZER_CACHE``
    for all its tests."""

    @pytest.fixture(scope="module")
    def cache(tmp_path_factory):
        folder = tmp_path_factory.mktemp(name)
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("VISUALIZER_CACHE", str(folder))
            yield folder

    return cache


def damages(tensor: str, framework: str, parameters: str = "float32 parameters") -> list:
    """``(damage, why)`` cases: ``damage(path)`` spoils a cache file, ``why`` matches the reason given.

    ``tensor``: a parameter of the demo's model, changed or left out; ``framework``: the module
    whose version the file records besides torch's; ``parameters``: what the reason says the
    file must hold.
    """

    def truncated(path):
        path.write_bytes(path.read_bytes()[:500])

    def flipped(path):
        arrays, metadata = read_arrays(path)
        arrays[tensor].flat[0] += 1.0
        write_arrays(path, arrays, metadata)

    def dropped(path):
        arrays, metadata = read_arrays(path)
        del arrays[tensor]
        write_arrays(path, arrays, {**metadata, "content_sha256": content_sha256(arrays)})

    def other(**changes):
        def damage(path):
            arrays, metadata = read_arrays(path)
            write_arrays(path, arrays, {**metadata, **changes})

        return damage

    return [
        pytest.param(truncated, "could not be read", id="truncated"),
        pytest.param(lambda path: path.write_bytes(b""), "could not be read", id="empty"),
        pytest.param(flipped, r"holds tensors whose sha256 .* differs", id="changed"),
        pytest.param(other(content_sha256=""), "has no content hash", id="no-hash"),
        pytest.param(other(torch="1.0.0"), "was trained with torch 1.0.0", id="torch"),
        pytest.param(other(**{framework: "0.1.0"}), f"was trained with {framework} 0.1.0", id=framework),
        pytest.param(other(trainer="0"), "was trained with trainer 0", id="trainer"),
        pytest.param(other(settings='{"seed": 9}'), "was trained with other settings", id="settings"),
        pytest.param(dropped, f"does not hold this model's {parameters}", id="dropped"),
        pytest.param(other(losses="[1.0,"), "has unreadable training metadata", id="losses"),
        pytest.param(other(threads="many"), "has unreadable training metadata", id="threads"),
    ]


def check_retrained(damage, why: str, name: str, *, cache, settings, load):
    """Damage the file of ``settings`` in the demo's ``cache`` (its ``_CACHE``): ``load()`` must warn
    why, name the demo ``name``, train again and replace the file with a good one. Returns its demo."""
    path = cache.path(settings)
    damage(path)
    with pytest.warns(CaptureWarning, match=re.escape(f"the cached {name} demo {path} ") + why):
        loaded = load()
    assert loaded.path == path
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cache.read(path, settings)[0] is not None
    return loaded


def check_unwritable(monkeypatch, tmp_path, name: str, load):
    """With a cache folder that cannot be made, ``load()`` must warn and still return its demo."""
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("VISUALIZER_CACHE", str(blocker / "cache"))
    with pytest.warns(CaptureWarning, match=f"could not cache the {name} demo.*VISUALIZER_CACHE"):
        loaded = load()
    assert loaded.path is None
    return loaded
