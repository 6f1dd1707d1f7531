"""Keep the tests' converted DINOv2 weights out of the user's cache, and convert them once.

Every test here sees ``VISUALIZER_CACHE`` pointing at one folder for the whole session, so
the first test that needs the real weights converts them (about a second) and every later
one reads the cache. Tests of the cache itself use folders of their own.
"""

import pytest


@pytest.fixture(scope="session", autouse=True)
def session_cache(tmp_path_factory):
    """The session's weight cache folder, set as ``VISUALIZER_CACHE``."""
    folder = tmp_path_factory.mktemp("visualizer-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VISUALIZER_CACHE", str(folder))
        yield folder


@pytest.fixture(scope="session")
def dinov2_timm(session_cache):
    """The real DINOv2 ViT-S/14 as a timm model at 224 px, loaded once for the session."""
    from visualizer.models import load_vit

    return load_vit()
