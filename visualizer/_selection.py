"""Which attention modules a selector names: the one rule of ``capture_attention(layers=...)``,
``ablate`` and ``head_effects``.

A selector is None (all); an int index in model order (negative counts from the end); a module
path; a regular expression matching whole paths; a list mixing those; or a callable
``(path, module) -> bool``. Naming one module twice is a ValueError, as everywhere
(:mod:`visualizer._validate`).
"""

from __future__ import annotations

import re

__all__ = ["listing", "select_targets"]


def select_targets(found: list, layers, model_name: str, argument: str) -> list:
    """The targets ``layers`` selects, in model order; clear errors for selections that miss.

    ``argument`` names the parameter as the caller wrote it (``"capture_attention(layers=...)"``)."""
    if layers is None:
        return found
    names = [target.name for target in found]
    if callable(layers) and not isinstance(layers, (str, re.Pattern)):
        chosen = [target for target in found if layers(target.name, target.module)]
        if not chosen:
            raise ValueError(f"{argument}: the function selected none of {listing(names)}")
        return chosen
    items = [layers] if isinstance(layers, (int, str, re.Pattern)) else layers
    try:
        items = list(items)
    except TypeError:
        raise TypeError(
            f"{argument} takes None, an int, a module path or regex, a list of those, "
            f"or a callable, not {type(layers).__name__}"
        ) from None
    from visualizer._validate import index  # (numpy: not imported with visualizer itself)

    wanted: set[int] = set()
    given: list = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, (int, str, re.Pattern)):
            raise TypeError(f"{argument}: {item!r} is neither a layer index, a module path nor a regex")
        if isinstance(item, int):
            position = index(item, len(found), argument, f"{model_name} attention module")
            given.append(position)
            wanted.add(position)
            continue
        if isinstance(item, str) and item in names:
            given.append(names.index(item))
            wanted.add(names.index(item))
            continue
        try:
            pattern = re.compile(item)
        except re.error as exc:
            raise ValueError(
                f"{argument}: {item!r} is neither a module path nor a valid regex "
                f"({exc}); "
                f"module paths: {listing(names)}"
            ) from None
        matched = [i for i, name in enumerate(names) if pattern.fullmatch(name)]
        if not matched:
            raise ValueError(
                f"{argument}: {getattr(item, 'pattern', item)!r} matches no "
                f"attention module (a regex must match the whole path); module paths: {listing(names)}"
            )
        wanted.update(matched)
    if len(set(given)) != len(given):  # the one policy of visualizer._validate: name each once
        repeated = sorted({names[i] for i in given if given.count(i) > 1})
        raise ValueError(
            f"{argument} selects {', '.join(repeated)} more than once ({items!r}); name each once"
        )
    return [target for i, target in enumerate(found) if i in wanted]


def listing(names: list[str]) -> str:
    """Up to twelve names, and how many there are in all."""
    shown = ", ".join(names[:12])
    return shown + (f", ... ({len(names)} in all)" if len(names) > 12 else "")
