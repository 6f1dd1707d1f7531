"""Rewrite every function of the installed torch, timm and transformers and check each."""

import corpus_tools
import pytest


@pytest.mark.corpus
def test_every_function_of_torch_timm_and_transformers_rewrites_soundly(capsys):
    results = corpus_tools.run(["torch", "timm", "transformers"])
    with capsys.disabled():
        print("\n" + corpus_tools.report(results))
    assert results["torch"]["code objects"] > 40_000
    assert results["transformers"]["code objects"] > 30_000
    assert results["timm"]["code objects"] > 5_000
    assert corpus_tools.failures(results) == []
