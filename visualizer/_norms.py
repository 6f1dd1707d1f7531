"""Normalisation layers whose scale is held constant under autograd, for conservative relevance.

>>> with constant_scales(model):           # every LayerNorm / RMSNorm of the model
...     output = model(inputs)             # the same values, bit for bit
...     torch.autograd.grad(output.sum(), leaf)   # d/dx with each token's 1/σ held fixed

A LayerNorm computes y = (x - μ)·s·w + b with s = 1/√(var(x) + ε); an RMSNorm y = x·s·w with
s = 1/√(mean(x²) + ε). Conservative propagation (Ali et al., ICML 2022, "XAI for
Transformers: Better Explanations through Conservative Propagation"; the "identity rule" of
AttnLRP) treats s as a constant, so that the layer is linear in x and passes relevance on
unchanged in sum. :func:`constant_scales` does that to every normalisation layer
(``torch.nn.LayerNorm``, ``torch.nn.RMSNorm``, and every module without submodules whose class
name says ``Norm``: Llama's, T5's, Gemma's, timm's; batch, group and instance norms excepted:
in eval mode a batch norm is affine already), with a forward hook that
returns ``y.detach() + (L(x) - L(x).detach())``, L(x) = (x - μ)·s.detach()·w: the forward values
are the module's own, the gradient is that of L.

The module's kind is read from what it computes, not assumed from its name: on its first call
its output is compared with the candidates (centred or not, times ``weight`` or ``1 + weight``:
Gemma's; with its declared ε, else 1e-5, 1e-6, 1e-12 or 0), over the last axis, or over axis 1
for a (batch, channels, height, width) map (timm's ``LayerNorm2d``); a module that computes
x·w + b without normalising (MobileBERT's ``NoNorm``) is linear already and left alone. A norm
none of them reproduces is refused with an error naming it, rather than given a gradient that
is not the rule's.
"""

from __future__ import annotations

import contextlib
import itertools
import re
from collections.abc import Iterator
from typing import Any

import torch

__all__ = ["NormError", "constant_scales", "is_norm"]

_NAMED = re.compile(r"Norm")
_EXCEPTED = re.compile(r"BatchNorm|GroupNorm|InstanceNorm|SyncBatch|WeightNorm|SpectralNorm")
#: The ε tried for a norm that does not declare one (F.layer_norm's and the common defaults).
_DEFAULT_EPS = (1e-5, 1e-6, 1e-12, 0.0)
#: The attribute names of a norm's ε, in the order they are looked for.
_EPS = ("eps", "variance_epsilon", "epsilon")


class NormError(ValueError):
    """A normalisation layer whose computation is not one of the forms this module holds constant."""


def is_norm(module: Any) -> bool:
    """A layer or RMS norm: ``nn.LayerNorm``, ``nn.RMSNorm``, or a module without submodules whose
    class name says ``Norm`` (not a batch, group or instance norm)."""
    if isinstance(module, (torch.nn.LayerNorm, getattr(torch.nn, "RMSNorm", torch.nn.LayerNorm))):
        return True
    name = type(module).__name__
    return (
        bool(_NAMED.search(name)) and not _EXCEPTED.search(name) and not any(True for _ in module.children())
    )


@contextlib.contextmanager
def constant_scales(model: Any) -> Iterator[None]:
    """While open, every layer and RMS norm of ``model`` has its scale held constant under autograd
    (see the module docstring). Hooks are removed on exit."""
    norms = [(name, module) for name, module in model.named_modules() if is_norm(module)]
    handles = []
    try:
        for name, module in norms:
            handles.append(module.register_forward_hook(_Hook(name), with_kwargs=True))
        yield
    finally:
        for handle in handles:
            handle.remove()


class _Hook:
    """The forward hook of one norm; its form (axis, centring, weight) is found on its first call."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.form: tuple[int, bool, str, float] | str | None = None

    def __call__(self, module, args, kwargs, output):
        x = args[0] if args else next(iter(kwargs.values()), None)
        if not isinstance(output, torch.Tensor) or not isinstance(x, torch.Tensor):
            raise NormError(
                f"{self.name} ({type(module).__name__}) does not map one tensor to one tensor, so its scale "
                "cannot be held constant"
            )
        if not (x.requires_grad and torch.is_grad_enabled()) or not x.numel():
            return None
        weight = getattr(module, "weight", None)
        if self.form is None:
            self.form = _form(self.name, module, x, output, weight)
        if self.form == "affine":  # no normalisation (MobileBERT's NoNorm): linear already
            return None
        axis, centred, scaled, eps = self.form
        linear = _linear(x, axis, centred, eps, _weight(weight, scaled, axis, x.dim()))
        return output.detach() + (linear - linear.detach()).to(output.dtype)


def _linear(x, axis: int, centred: bool, eps: float, weight):
    """(x - μ)·s.detach()·w (μ only when ``centred``), in float32."""
    x = x.float()
    if centred:
        x = x - x.mean(axis, keepdim=True)
    scale = torch.rsqrt(x.detach().pow(2).mean(axis, keepdim=True) + eps)
    return x * scale if weight is None else x * scale * weight


def _weight(weight, scaled: str, axis: int, dims: int):
    if scaled == "none" or weight is None:
        return None
    value = weight.detach().float()
    if scaled == "one plus":
        value = value + 1.0
    if axis == 1 and dims > 2:  # (channels,) against (batch, channels, ...)
        value = value.reshape(-1, *([1] * (dims - 2)))
    return value


def _form(name: str, module, x, output, weight) -> tuple[int, bool, str, float] | str:
    """The (axis, centred, weight form, ε) that reproduces ``output`` from ``x``, or "affine" for a
    module computing x·w + b (no normalisation); NormError if none."""
    bias = getattr(module, "bias", None)
    expected = output.detach().float()
    declared = [float(getattr(module, n)) for n in _EPS if isinstance(getattr(module, n, None), float)]
    axes = [-1] + ([1] if x.dim() == 4 else [])
    forms = ["weight", "one plus"] if isinstance(weight, torch.Tensor) else ["none"]
    for axis, centred, scaled, eps in itertools.product(
        axes, (True, False), forms, declared[:1] or _DEFAULT_EPS
    ):
        value = weight if scaled != "none" else None
        if value is not None and (value.dim() != 1 or value.shape[0] != x.shape[axis]):
            continue
        with torch.no_grad():
            candidate = _linear(x.detach(), axis, centred, eps, _weight(value, scaled, axis, x.dim()))
            if isinstance(bias, torch.Tensor) and bias.shape == (x.shape[axis],):
                shift = bias.detach().float()
                candidate = candidate + (shift.reshape(-1, 1, 1) if axis == 1 else shift)
        if candidate.shape == expected.shape and _close(candidate, expected, output.dtype):
            return axis, centred, scaled, eps
    last = (x.shape[-1],)
    if all(not isinstance(p, torch.Tensor) or p.shape == last for p in (weight, bias)):
        with torch.no_grad():  # (tried last: an input already normalised fits both)
            affine = x.detach().float()
            affine = affine * weight.detach().float() if isinstance(weight, torch.Tensor) else affine
            affine = affine + bias.detach().float() if isinstance(bias, torch.Tensor) else affine
        if affine.shape == expected.shape and _close(affine, expected, output.dtype):
            return "affine"
    raise NormError(
        f"method='attnlrp' holds normalisation scales constant, and {name} ({type(module).__name__}) is a "
        "norm whose output is none of the layer-norm or RMS-norm forms (centred or not, times weight or "
        "1 + weight, over the last axis or the channels): its scale cannot be held constant"
    )


def _close(candidate, expected, dtype) -> bool:
    tolerance = 1e-4 if dtype == torch.float32 else 2e-2
    span = float(expected.abs().max()) if expected.numel() else 0.0
    return bool((candidate - expected).abs().max() <= tolerance * max(1.0, span))
