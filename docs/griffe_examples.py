"""A griffe extension for the API reference: docstrings written for Sphinx, read as Markdown.

- The docstrings open with an example written as doctest lines, often with no blank line
  before them; Markdown would read them as prose (and ``maps[3][0]`` as a link). Each run of
  lines that starts with ``>>>`` and ends at a blank line becomes a fenced ``pycon`` block
  (unless it is indented as a code block already).
- Sphinx roles (:func:`rollout`, :class:`~visualizer.LayoutError`) become inline code
  (``rollout``, ``LayoutError``).
"""

from __future__ import annotations

import re

import griffe

__all__ = ["Examples"]


def fence(text: str) -> str:
    out: list[str] = []
    inside = False
    for line in text.splitlines():
        stripped = line.lstrip()
        if not inside and stripped.startswith(">>>") and len(line) - len(stripped) < 4:
            indent = line[: len(line) - len(stripped)]
            if out and out[-1].strip():
                out.append("")
            out.append(f"{indent}```pycon")
            inside = True
        elif inside and not stripped:
            out.append(f"{indent}```")
            inside = False
        out.append(line)
    if inside:
        out.append(f"{indent}```")
    return "\n".join(out)


ROLE = re.compile(r":(?:py:)?(?:func|class|meth|data|attr|mod|obj|exc):`~?([^`]+)`")


def roles(text: str) -> str:
    return ROLE.sub(
        lambda m: f"`{m.group(1).rsplit('.', 1)[-1] if m.group(0).count('~') else m.group(1)}`", text
    )


class Examples(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = roles(fence(obj.docstring.value))
