"""``AttentionView``: a built view that saves as a file and shows itself in Jupyter.

>>> view = head_view(attentions, tokens)
>>> view.save("attention.html")          # open it from disk: no network, no CDN
PosixPath('attention.html')
>>> view                                  # in a notebook cell: the view, in an iframe
>>> view.display(inline=True)            # or straight into the page, without the iframe

How it embeds: ``_repr_html_`` returns an ``<iframe srcdoc="...">`` holding the whole
document, sandboxed to ``allow-scripts``. Jupyter front ends run no JavaScript of their
own for it, need no requireJS and no extension, and the page's CSS cannot leak in or out;
VS Code, JupyterLab and the classic notebook all render srcdoc iframes (folium/branca do
the same). Each copy gets a fresh element id, so any number of views share a page.
A notebook that Jupyter does not trust shows its HTML outputs without scripts: the frame
then says so instead of staying blank.
"""

from __future__ import annotations

import html
import os
import pathlib

from visualizer._files import write_text
from visualizer.view._document import Fragment, new_id, render_page

__all__ = ["AttentionView"]

#: Tallest iframe a notebook output gets by default; a longer view scrolls inside it.
MAX_FRAME_HEIGHT = 760


class AttentionView:
    """An offline, interactive attention view: the HTML of one head view or image view.

    Build one with :func:`~visualizer.view.head_view` or :func:`~visualizer.view.image_view`.

    - ``html``: the complete, self-contained document (str);
    - ``save(path)``: write it, UTF-8, and return the path;
    - ``iframe(height=None)`` / ``_repr_html_()``: the notebook form;
    - ``fragment()``: a bare ``<div>`` (fresh id) to paste into a page of your own;
    - ``display(inline=False)``: show it from code, in Jupyter.
    """

    def __init__(self, kind: str, fragment: Fragment, *, title: str, height: int, summary: str) -> None:
        self.kind = kind
        self.title = title
        self.height = int(height)
        self._fragment = fragment
        self._summary = summary
        self._html: str | None = None

    @property
    def html(self) -> str:
        """The complete HTML document."""
        if self._html is None:
            self._html = render_page(self._fragment.with_id(new_id()), self.title)
        return self._html

    @property
    def data(self) -> str:
        """The HTML document, under the name of bertviz's returned object (``html_action="return"``)."""
        return self.html

    @property
    def nbytes(self) -> int:
        """Size of the document in bytes, as saved."""
        return len(self.html.encode("utf-8"))

    def fragment(self) -> str:
        """The view as one ``<div>`` with a fresh element id, for pages and notebooks that run scripts."""
        return self._fragment.with_id(new_id())

    def save(self, path) -> pathlib.Path:
        """Write the document to ``path`` (UTF-8, atomically: whole or not at all) and return it as a Path."""
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be a str or a path; got {type(path).__name__}")
        path = pathlib.Path(path)
        if path.is_dir():
            example = path / f"{self.kind}_view.html"
            raise IsADirectoryError(f"{path} is a folder; give a file name, e.g. {example}")
        if not path.parent.is_dir():
            raise FileNotFoundError(
                f"cannot save to {path}: the folder {path.parent} does not exist; create it first"
            )
        document = self.html
        try:
            document.encode("utf-8")
        except UnicodeEncodeError as error:
            around = document[max(0, error.start - 40) : error.end + 40]
            raise ValueError(
                f"cannot save the view as UTF-8: it holds the lone surrogate {document[error.start]!r} "
                f"in ...{around!r}...; fix that token, title or label (nothing was written, {path} is "
                "as it was)"
            ) from None
        # Atomic: a reader, a crash or an error never leaves a partial or empty file behind.
        write_text(path, document)
        return path

    def iframe(self, height: int | None = None) -> str:
        """The notebook form: the document in a sandboxed ``<iframe srcdoc>``, ``height`` px tall."""
        if height is None:
            height = min(self.height, MAX_FRAME_HEIGHT)
        if isinstance(height, bool) or not isinstance(height, int) or height < 50:
            raise ValueError(f"height must be an int of at least 50 (pixels); got {height!r}")
        document = render_page(self._fragment.with_id(new_id()), self.title)
        # The attribute in ASCII: a host page without a UTF-8 charset would garble a raw "·" or "√".
        # Character references in an attribute are decoded before the frame parses its document,
        # so scripts inside still see the real characters.
        source = html.escape(document, quote=True).encode("ascii", "xmlcharrefreplace").decode("ascii")
        # The note sits under the frame and shows only when the frame stays empty (an untrusted notebook).
        return (
            f'<div class="tvz-frame" style="position:relative;width:100%;height:{height}px;">'
            '<div style="position:absolute;inset:0;padding:12px;color:#777;font:13px sans-serif;">'
            "Attention view: if this stays empty, trust the notebook (its scripts are off) or open "
            "the file written by <code>view.save(path)</code>.</div>"
            f'<iframe srcdoc="{source}" title="{html.escape(self.title)}" '
            'sandbox="allow-scripts" loading="eager" '
            f'style="position:relative;width:100%;height:{height}px;border:0;background:#fff;'
            'resize:vertical;">'
            "</iframe></div>"
        )

    def _repr_html_(self) -> str:
        return self.iframe()

    def display(self, *, inline: bool = False, height: int | None = None) -> None:
        """Show the view in Jupyter: an iframe (default), or the bare fragment with ``inline=True``."""
        try:
            from IPython.display import HTML, display
        except ImportError as error:
            raise ImportError(
                "display() needs IPython, i.e. a Jupyter kernel; elsewhere call "
                "view.save('view.html') and open the file in a browser"
            ) from error
        if inline and height is not None:
            raise ValueError("height applies to the iframe only; drop it or use inline=False")
        display(HTML(self.fragment() if inline else self.iframe(height)))

    def __repr__(self) -> str:
        return f"<AttentionView {self.kind}: {self._summary}, {self.nbytes / 1e6:.2f} MB>"
