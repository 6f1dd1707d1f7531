"""Loud diagnosis: capture_attention never hands back an empty result silently, and rejects bad input."""

import re

import pytest
import torch
from torch import nn

from visualizer import CaptureError, CaptureWarning, capture_attention


class Gated(nn.Module):
    """timm's convention (a fused_attn switch, an `attn` local), but `attn` only on some inputs."""

    def __init__(self):
        super().__init__()
        self.fused_attn = True

    def forward(self, x):
        if x.shape[1] > 2:
            attn = (x @ x.transpose(-2, -1)).softmax(-1).unsqueeze(1)
            x = attn.squeeze(1) @ x
        return x


class Skipping(nn.Module):
    def __init__(self):
        super().__init__()
        self.attention = nn.MultiheadAttention(4, 1, batch_first=True)

    def forward(self, x, use_attention=False):
        return self.attention(x, x, x)[0] if use_attention else x


def test_a_model_without_attention_is_refused_with_the_fix():
    with pytest.raises(ValueError, match=r"found no attention module in Linear.*@get_local\('attn'\)"):
        capture_attention(nn.Linear(2, 2)).start()


def test_nothing_run_inside_the_block_warns_and_lookups_explain(tiny_transformer):
    with pytest.warns(CaptureWarning, match="call the model inside the `with capture_attention"):
        with capture_attention(tiny_transformer) as maps:
            pass
    assert len(maps) == 0
    with pytest.raises(IndexError, match="no layer was captured.*ran while capture was on"):
        maps[0]
    with pytest.raises(KeyError, match="did not run while capture was on"):
        maps["encoder.layers.0.self_attn"]
    with pytest.raises(KeyError, match="did not run while capture was on"):
        maps.at(0)
    with pytest.raises(LookupError, match="nothing captured"):
        maps.stack()


def test_a_model_that_ran_without_running_its_attention_says_so():
    model = Skipping()
    with pytest.warns(CaptureWarning, match=r"Skipping ran 1 time\(s\), but none of the 1 attention layers"):
        with capture_attention(model):
            model(torch.randn(1, 2, 4))


def test_modules_that_ran_without_weights_raise_when_none_produced_any():
    model = nn.Sequential(Gated(), Gated())
    with pytest.raises(CaptureError, match=r"nothing was captured.*returned without assigning 'attn'"):
        with capture_attention(model):
            model(torch.randn(1, 2, 4))
    assert all(module.fused_attn for module in model)


def test_some_calls_without_weights_warn_and_keep_the_rest():
    model = Gated()
    with pytest.warns(CaptureWarning, match="some calls of .* produced no weights"):
        with capture_attention(model) as maps:
            model(torch.randn(1, 3, 4))
            model(torch.randn(1, 2, 4))
    assert len(maps.calls(0)) == 1 and maps[0].shape == (1, 1, 3, 3)


def test_keep_grad_under_no_grad_warns(tiny_transformer):
    with pytest.warns(CaptureWarning, match="keep_grad=True.*no_grad"):
        with torch.no_grad(), capture_attention(tiny_transformer.encoder, keep_grad=True):
            tiny_transformer.encoder(torch.randn(1, 3, 16))


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"dtype": "float16"}, TypeError, "dtype must be a torch.dtype"),
        ({"dtype": torch.int8}, ValueError, "floating-point dtype"),
        ({"device": "gpu:7"}, ValueError, "'gpu:7' is not a device"),
        ({"max_calls": 0}, ValueError, r"max_calls=...\) must be an int >= 1"),
        ({"max_calls": 2.0}, TypeError, r"max_calls=...\) must be an int >= 1"),
        ({"layers": [1, -5]}, ValueError, "selects encoder.layers.1.self_attn more than once"),
        ({"keep_grad": "yes"}, TypeError, "keep_grad must be True or False"),
        (
            {"layers": 6},
            IndexError,
            re.escape(
                "Transformer attention module 6 is out of range; there are 6 Transformer attention modules "
                "(valid: 0..5, or -6..-1)"
            ),
        ),
        ({"layers": [0, 2.5]}, TypeError, "2.5 is neither a layer index"),
        ({"layers": "blocks.*"}, ValueError, "matches no attention module .*must match the whole path"),
        ({"layers": "enc(oder"}, ValueError, "neither a module path nor a valid regex"),
        ({"layers": lambda name, module: False}, ValueError, "the function selected none"),
        ({"layers": 3.0}, TypeError, "takes None, an int, a module path"),
    ],
)
def test_bad_arguments_get_clear_errors(tiny_transformer, kwargs, error, message):
    with pytest.raises(error, match=message):
        capture_attention(tiny_transformer, **kwargs).start()


def test_a_model_must_be_a_module_and_a_capture_starts_once(tiny_transformer):
    with pytest.raises(TypeError, match="needs a torch.nn.Module, not function"):
        capture_attention(lambda x: x)
    capture = capture_attention(tiny_transformer.encoder)
    capture.start()
    with pytest.raises(RuntimeError, match="already started"):
        capture.start()
    with pytest.warns(CaptureWarning):
        capture.stop()
    assert not tiny_transformer.encoder.layers[0].self_attn._forward_hooks
