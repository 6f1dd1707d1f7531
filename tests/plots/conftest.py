"""Every plot test: no plot may call plt.show() or leave a figure registered with pyplot."""

import matplotlib.pyplot as plt
import pytest


@pytest.fixture(autouse=True)
def no_pyplot(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("plt.show() was called")

    monkeypatch.setattr(plt, "show", refuse)
    before = plt.get_fignums()
    yield
    assert plt.get_fignums() == before
