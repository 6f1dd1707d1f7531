"""One way of running a benchmark forward pass, and the variants that every model family shares.

    >>> variant = capture_attention_variant(config)
    >>> variant.enter(); output = variant.step(); maps = variant.maps(); variant.reset(); variant.leave()
    >>> len(maps), maps[0].shape                    # layers; (batch, heads, queries, keys)

Only ``step`` is timed. ``enter`` and ``leave`` switch the shared model (fused attention,
patched functions) around each timed block, so that interleaved variants never see each
other's state; ``close`` undoes what the variant set up once per configuration.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Callable
from typing import Any

__all__ = [
    "KEYS",
    "Variant",
    "anycapture_variant",
    "baseline_variant",
    "capture_attention_variant",
    "copy_function",
    "features",
    "forward_step",
    "get_local_variant",
    "noop",
]

# Every variant, in table order.
KEYS = ("baseline", "eager", "get_local", "capture_attention", "hooks", "output_attentions", "anycapture")


def noop() -> None:
    pass


@dataclasses.dataclass
class Variant:
    key: str  # one of KEYS
    label: str  # what the table says
    step: Callable[[], Any]  # one forward pass; returns the model's features
    maps: Callable[[], list | None] = lambda: None  # what the last step captured, per layer
    reset: Callable[[], None] = noop  # drop what the last step captured
    enter: Callable[[], None] = noop
    leave: Callable[[], None] = noop
    close: Callable[[], None] = noop
    same_model: bool = True  # False: another implementation, whose output is not compared with the baseline's
    same_weights: bool = True  # False: other weights too, so its maps are not compared with get_local's


def features(output):
    """The tensor a forward returns (timm), or its last hidden state (transformers)."""
    return getattr(output, "last_hidden_state", output)


def forward_step(config) -> Callable[[], Any]:
    """One forward of the configuration's model on its inputs, returning its features."""
    return lambda: features(config.model(**config.inputs))


def baseline_variant(config) -> Variant:
    label = "fused forward (baseline)" if config.family == "timm" else "sdpa forward (baseline)"
    return Variant("baseline", label, forward_step(config))


def get_local_variant(
    config,
    function: types.FunctionType,
    name: str,
    label: str,
    to_eager: Callable[[], None],
    back: Callable[[], None],
) -> Variant:
    """The global ``get_local`` on ``function`` itself, in place, with the model switched by ``to_eager``."""
    from visualizer import get_local

    function = get_local(name)(function)
    key = get_local.key_of(function)

    def enter() -> None:
        to_eager()
        get_local.activate()

    def leave() -> None:
        get_local.deactivate()
        back()

    return Variant(
        "get_local",
        label,
        forward_step(config),
        maps=lambda: list(get_local.cache[key]),
        reset=get_local.clear,
        enter=enter,
        leave=leave,
        close=lambda: get_local.undo(function),
    )


def anycapture_variant(
    config,
    owner,
    attribute: str,
    name: str,
    label: str,
    to_eager: Callable[[], None],
    back: Callable[[], None],
) -> Variant:
    """anycapture 0.1.4's wrapper around a copy of ``owner.attribute``.

    It is put in the attribute's place between enter and leave.

    anycapture rewrites the ``__code__`` of the function it is given and returns a
    wrapper, so it gets a copy, never the library's own function.
    """
    from peers import load_anycapture

    tool = load_anycapture().get_local
    original = getattr(owner, attribute)
    copy = copy_function(original)
    wrapper = tool(name)(copy)
    key = f"{copy.__qualname__}.{name}"

    def enter() -> None:
        to_eager()
        setattr(owner, attribute, wrapper)
        tool.activate()

    def leave() -> None:
        tool.deactivate()
        setattr(owner, attribute, original)
        back()

    return Variant(
        "anycapture",
        label,
        forward_step(config),
        maps=lambda: list(tool.cache[key]),
        reset=tool.clear,
        enter=enter,
        leave=leave,
    )


def capture_attention_variant(config) -> Variant:
    """``with capture_attention(model) as maps: model(x)``, entered and left on every forward."""
    from visualizer import capture_attention

    kept = {}

    def step():
        with capture_attention(config.model) as maps:
            output = config.model(**config.inputs)
        kept["maps"] = maps
        return features(output)

    return Variant(
        "capture_attention",
        "capture_attention",
        step,
        maps=lambda: list(kept["maps"]),
        reset=kept.clear,
    )


def copy_function(function: types.FunctionType) -> types.FunctionType:
    """A new function object sharing ``function``'s code, for tools that rewrite ``__code__`` in place."""
    copy = types.FunctionType(
        function.__code__,
        function.__globals__,
        function.__name__,
        function.__defaults__,
        function.__closure__,
    )
    copy.__kwdefaults__ = function.__kwdefaults__
    copy.__qualname__ = function.__qualname__
    copy.__module__ = function.__module__
    return copy
