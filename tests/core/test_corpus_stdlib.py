"""Rewrite every function of this Python's standard library (tens of thousands) and check each."""

import corpus_tools
import pytest


@pytest.mark.corpus
def test_every_stdlib_function_rewrites_soundly_or_is_refused_for_a_documented_reason(capsys):
    results = corpus_tools.run(["stdlib"])
    with capsys.disabled():
        print("\n" + corpus_tools.report(results))
    counts = results["stdlib"]
    assert counts["code objects"] > 40_000
    assert counts["rewrites checked"] > 60_000
    assert corpus_tools.failures(results) == []
    refused = {key for key in counts if key.startswith("refused: ")}
    assert refused <= {
        "refused: it is an async generator function",
        "refused: 'T' is both a cell and a free variable of this code (a PEP 695 type-parameter scope), "
        "which the bytecode package cannot represent",
    }


def test_the_checker_catches_a_broken_rewrite(monkeypatch):
    """The corpus check must be able to fail: feed it rewrites that are wrong on purpose."""
    from visualizer._core import rewrite as _rewrite

    def sample(x):
        y = x + 1
        return y

    real = _rewrite.instrument

    def too_small_stack(code, names):
        return real(code, names).replace(co_stacksize=1)

    def lost_positions(code, names):
        new = real(code, names)
        return new.replace(co_linetable=new.co_linetable[:2])  # later instructions lose their lines

    for broken, expected in [(too_small_stack, "needs a stack of"), (lost_positions, "source position")]:
        monkeypatch.setattr(corpus_tools, "instrument", broken)
        assert expected in corpus_tools.check(sample.__code__, ("y",))
    monkeypatch.setattr(corpus_tools, "instrument", real)
    assert corpus_tools.check(sample.__code__, ("y",)) is None
