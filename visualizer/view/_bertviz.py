"""bertviz's arguments, taken with bertviz's meaning, by ``head_view`` and ``model_view``.

>>> arguments = Arguments("head_view()", attentions=None, attention=out.attentions, ...)
>>> arguments.maps, arguments.tokens, arguments.layers      # each from our name or bertviz's
>>> finish(view, arguments.action)                          # html_action: None, "view" or "return"

bertviz 1.4 names: ``attention`` (ours: ``attentions``), ``include_layers`` (``layers``),
``include_heads`` (the heads the page holds), ``heads`` (head_view: the heads ticked when it
opens; ours: ``head``), ``encoder_tokens`` (``tokens``), ``prettify_tokens=False`` (``scheme="raw"``),
``display_mode`` (the theme the page opens with), ``sentence_b_start`` (the sentence filter),
the encoder-decoder form (``encoder_attention``, ``decoder_attention``, ``cross_attention``) and
``html_action``. Where our name and bertviz's are both given and disagree: a ValueError.
"""

from __future__ import annotations

import numbers

from visualizer._arrays import as_maps

__all__ = ["ACTIONS", "SENTENCES", "THEMES", "Arguments", "finish", "sentence_parts"]

#: html_action: None returns the view (ours); "view" displays it and returns None; "return"
#: returns it (its ``.data`` is the HTML, as bertviz's returned object has).
ACTIONS = (None, "view", "return")
#: display_mode: the theme a page opens with (None: the system's, as our views do).
THEMES = (None, "light", "dark")
#: The sentence filter's choices (bertviz's), with the query and key parts of each.
SENTENCES = (
    ("All", "all", "all"),
    ("Sentence A \u2192 Sentence A", "a", "a"),
    ("Sentence B \u2192 Sentence B", "b", "b"),
    ("Sentence A \u2192 Sentence B", "a", "b"),
    ("Sentence B \u2192 Sentence A", "b", "a"),
)


def _same(a, b) -> bool:
    """Whether two values of one argument say the same: the same object, or equal plain values
    (indices, lists of them, strings); maps are the same only as one object."""
    if a is b:
        return True
    if isinstance(a, (str, numbers.Integral)) or isinstance(b, (str, numbers.Integral)):
        return isinstance(a, str) == isinstance(b, str) and bool(a == b)
    try:
        return [int(x) for x in a] == [int(x) for x in b]
    except (TypeError, ValueError):
        return False


def _either(what: str, ours, theirs, our_name: str, their_name: str):
    """The one of two names for one argument that was given; ValueError when both were and differ."""
    if ours is not None and theirs is not None and not _same(ours, theirs):
        raise ValueError(
            f"{what}: {our_name}= and {their_name}= (bertviz's name) are the same argument and disagree; "
            "pass one of them"
        )
    return ours if ours is not None else theirs


class Arguments:
    """Our arguments and bertviz's, resolved to ours: ``maps`` (an AttentionMaps), ``tokens``,
    ``layers``, ``heads`` (kept), ``head`` (ticked), ``scheme``, ``theme``, ``action``."""

    def __init__(
        self,
        what: str,
        *,
        attentions,
        attention,
        tokens,
        encoder_tokens,
        encoder_attention,
        decoder_attention,
        cross_attention,
        layers,
        include_layers,
        include_heads,
        head=None,
        heads=None,
        scheme=None,
        prettify_tokens=True,
        display_mode=None,
        html_action=None,
    ) -> None:
        maps = _either(what, attentions, attention, "attentions", "attention")
        parts = {
            "encoder_attentions": encoder_attention,
            "decoder_attentions": decoder_attention,
            "cross_attentions": cross_attention,
        }
        given = {key: value for key, value in parts.items() if value is not None}
        if given and maps is not None:
            raise ValueError(
                f"{what}: pass the maps once: attentions= (or attention=), or the encoder-decoder form "
                "encoder_attention=, decoder_attention=, cross_attention=, not both"
            )
        if given:
            maps = given  # a Hugging Face output's fields: roles and kinds declared
        if maps is None:
            raise TypeError(f"{what}: pass the attention maps, attentions= (bertviz: attention=)")
        self.maps = as_maps(maps, f"{what}: attentions").maps
        self.tokens = _either(what, tokens, encoder_tokens, "tokens", "encoder_tokens")
        self.layers = _either(what, layers, include_layers, "layers", "include_layers")
        self.heads = include_heads
        self.head = _either(what, head, heads, "head", "heads")
        if not isinstance(prettify_tokens, bool):
            raise TypeError(f"{what}: prettify_tokens must be True or False, not {prettify_tokens!r}")
        self.scheme = _either(what, scheme, None if prettify_tokens else "raw", "scheme", "prettify_tokens")
        if display_mode not in THEMES:
            raise ValueError(f"{what}: display_mode must be 'light', 'dark' or None, not {display_mode!r}")
        if html_action not in ACTIONS:
            raise ValueError(
                f"{what}: html_action must be None (return the view), 'view' (display it) or 'return', "
                f"not {html_action!r}"
            )
        self.theme, self.action = display_mode, html_action


def finish(view, action):
    """What a view function returns for ``html_action``: the view, or None after displaying it."""
    if action != "view":
        return view
    from IPython.display import display

    display(view)
    return None


def sentence_parts(start, count: int, what: str) -> dict[str, slice]:
    """The token ranges of bertviz's sentence filter: ``{"all", "a", "b"}`` for sentence B from ``start``."""
    if isinstance(start, bool) or not isinstance(start, int):
        raise TypeError(
            f"{what}: sentence_b_start must be an int (the first token of sentence B), not {start!r}"
        )
    if not 0 < start < count:
        raise ValueError(
            f"{what}: sentence_b_start must be from 1 to {count - 1}, the first token of sentence B among "
            f"the {count} tokens; got {start}"
        )
    return {"all": slice(None), "a": slice(0, start), "b": slice(start, count)}
