"""Assemble a view's HTML from the templates in ``static/``: one fragment, wrapped in a page.

>>> fragment = render_fragment("image", config, payload, extra_scripts={"tvz-image": png})
>>> page = render_page(fragment.with_id(new_id()), title="DINOv2")

The fragment is a ``<div>`` holding its own CSS (scoped under ``.tvz``), the config as
JSON, the payload as base64 text, and one classic inline script. The script finds its
root with ``document.getElementById`` and keeps everything in a closure, so two views in
one notebook page never collide, provided each copy gets its own id: :class:`Fragment`
hands out the markup with a fresh id every time.
"""

from __future__ import annotations

import html
import json
import re
import uuid
from importlib import resources

__all__ = [
    "Fragment",
    "check_text",
    "check_title",
    "new_id",
    "plural",
    "read_static",
    "render_fragment",
    "render_page",
]

# Views that open others inside them bring those views' scripts too (the last file's tvzView runs).
_SCRIPTS = {"model": ("head_view.js", "image_view.js", "model_view.js")}

_PLACEHOLDER = re.compile(r"\{\{([A-Z]+)\}\}")


def read_static(name: str) -> str:
    """The text of one file in ``visualizer/view/static``."""
    return resources.files("visualizer.view").joinpath("static", name).read_text(encoding="utf-8")


def new_id() -> str:
    """A fresh element id, unique across views, notebook outputs and pages."""
    return "tvz-" + uuid.uuid4().hex[:16]


def check_title(title, default: str) -> str:
    """``title``, or ``default`` for None; anything but a str is refused."""
    if title is None:
        return default
    if not isinstance(title, str):
        raise TypeError(f"title must be a str or None; got {type(title).__name__}")
    return check_text(title, "title")


def check_text(text: str, argument: str) -> str:
    """``text``, refused with a ValueError naming it when it cannot be saved as UTF-8.

    A lone surrogate (``"\\ud800"``, e.g. from bytes decoded with ``errors="surrogateescape"``)
    is a valid Python str but no UTF-8 text: the view could never be saved.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        bad = text[error.start : error.end]
        raise ValueError(
            f"{argument} {text!r} cannot be encoded as UTF-8 (it holds the lone surrogate {bad!r} at "
            f"{error.start}); fix the text, e.g. text.encode('utf-8', 'replace').decode('utf-8')"
        ) from None
    return text


def plural(count: int, noun: str) -> str:
    """``"1 layer"``, ``"12 layers"``: for the one-line summaries of views."""
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _fill(template: str, values: dict[str, str]) -> str:
    # One pass, so text inserted for one placeholder (a token "{{ID}}", say) is never expanded again.
    return _PLACEHOLDER.sub(lambda match: values[match.group(1)], template)


def _script_json(value) -> str:
    """JSON that can sit inside a <script> element: no '<' can close it or open a comment."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


class Fragment:
    """A view's markup, handing out a copy with a fresh element id on each :meth:`with_id`."""

    __slots__ = ("_parts",)

    def __init__(self, parts: list[str]) -> None:
        self._parts = parts

    def with_id(self, element_id: str) -> str:
        return element_id.join(self._parts)


def render_fragment(kind: str, config: dict, payload: str, extra_scripts: dict | None = None) -> Fragment:
    """The ``<div>`` of a ``kind`` view ("head" or "image"): CSS, config, base64 payload and script."""
    # A marker no user text can contain by chance stands for the id until with_id().
    marker = "@" + uuid.uuid4().hex + "@"
    extra = "".join(
        f'<script type="application/octet-stream" class="{name}">{text}</script>\n'
        for name, text in (extra_scripts or {}).items()
    )
    names = _SCRIPTS.get(kind, (f"{kind}_view.js",))
    script = "\n".join(read_static(name) for name in ("runtime.js", *names))
    text = _fill(
        read_static("fragment.html"),
        {
            "KIND": kind,
            "ID": marker,
            "CSS": read_static("view.css") + _kind_css(kind),
            "CONFIG": _script_json(config),
            "PAYLOAD": payload,
            "EXTRA": extra,
            "SCRIPT": script,
        },
    )
    return Fragment(text.split(marker))


def _kind_css(kind: str) -> str:
    """The CSS of one kind of view (``static/<kind>_view.css``), if it has its own."""
    path = resources.files("visualizer.view").joinpath("static", f"{kind}_view.css")
    return "\n" + path.read_text(encoding="utf-8") if path.is_file() else ""


def render_page(fragment: str, title: str) -> str:
    """A complete HTML document around one fragment."""
    return _fill(read_static("page.html"), {"TITLE": html.escape(title), "FRAGMENT": fragment})
