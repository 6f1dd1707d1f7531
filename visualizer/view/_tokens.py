"""Readable tokens: the markers tokenizers put into their pieces, turned back into text.

>>> [t.text for t in pretty_tokens(["[CLS]", "play", "##ing", "[SEP]"])]
['[CLS]', 'play', 'ing', '[SEP]']
>>> [(t.text, t.space) for t in pretty_tokens(["The", "Ġcat", "Ċ"])]      # GPT-2 byte-level BPE
[('The', False), ('cat', True), ('\\n', False)]
>>> pretty_tokens(["▁The", "▁cat"])[1]                                      # SentencePiece
Token(text='cat', space=True, raw='▁cat')

Each :class:`Token` keeps the ``raw`` piece (the views show it on hover), the ``text`` to
show, and ``space``: whether a space comes before it when the pieces are laid out as prose.

Which convention a list follows is read from the markers it holds, in this order:

- ``"bytelevel"``: GPT-2, RoBERTa, Llama 3 and other byte-level BPEs, whose pieces are
  written in GPT-2's 256-character byte alphabet (``Ġ`` a space, ``Ċ`` a newline); a piece
  is decoded back to its UTF-8 bytes, and one that holds only part of a character keeps
  its raw form;
- ``"sentencepiece"``: T5, ALBERT, Llama 2, XLM-R: ``▁`` stands for a space;
- ``"wordpiece"``: BERT and its kin: ``##`` opens a piece that continues a word.

Pass ``scheme=`` to say it instead, or ``scheme="raw"`` to show the pieces as they are.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["SCHEMES", "Token", "detect_scheme", "pretty_tokens"]

SCHEMES = ("bytelevel", "sentencepiece", "wordpiece", "raw")


@dataclass(frozen=True)
class Token:
    """One token as a view shows it: ``text``, a ``space`` before it in prose, and the ``raw`` piece."""

    text: str
    space: bool
    raw: str


@functools.cache
def _byte_decoder() -> dict[str, int]:
    # GPT-2's reversible map of the 256 byte values onto printable characters (openai/gpt-2
    # encoder.py): printable Latin-1 stands for itself, every other byte for 256 + n.
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {chr(byte): byte for byte in printable}
    extra = 0
    for byte in range(256):
        if byte not in printable:
            table[chr(256 + extra)] = byte
            extra += 1
    return table


def detect_scheme(tokens: Sequence[str]) -> str:
    """The convention ``tokens`` follow, from the markers they hold (see the module docstring)."""
    decoder = _byte_decoder()
    if any(("Ġ" in t or "Ċ" in t) and all(ch in decoder for ch in t) for t in tokens):
        return "bytelevel"
    if any("▁" in t for t in tokens):
        return "sentencepiece"
    if any(t.startswith("##") and len(t) > 2 for t in tokens):
        return "wordpiece"
    return "raw"


def pretty_tokens(tokens: Sequence[str], scheme: str | None = None) -> list[Token]:
    """``tokens`` as :class:`Token` objects; ``scheme``: one of :data:`SCHEMES`, None to read it from them."""
    if scheme is None:
        scheme = detect_scheme(tokens)
    elif scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {', '.join(map(repr, SCHEMES))} or None; got {scheme!r}")
    return [_pretty(token, scheme, first=position == 0) for position, token in enumerate(tokens)]


def _pretty(raw: str, scheme: str, first: bool) -> Token:
    if scheme == "bytelevel":
        decoder = _byte_decoder()
        if raw and all(ch in decoder for ch in raw):
            try:
                text = bytes(decoder[ch] for ch in raw).decode("utf-8")
            except UnicodeDecodeError:  # part of a multi-byte character: keep the piece
                return Token(raw, False, raw)
            return _spaced(text, raw)
        return Token(raw, False, raw)
    if scheme == "sentencepiece":
        return _spaced(raw.replace("▁", " "), raw)
    if scheme == "wordpiece":
        if raw.startswith("##") and len(raw) > 2:
            return Token(raw[2:], False, raw)
        return Token(raw, not first and not _special(raw), raw)
    return Token(raw, False, raw)


def _spaced(text: str, raw: str) -> Token:
    # One leading space becomes the gap before the token; what is left is shown. A piece that is
    # only whitespace (a newline, a lone space) keeps it, so it stays visible and hoverable.
    if text.startswith(" ") and text.strip():
        return Token(text[1:], True, raw)
    return Token(text, False, raw)


def _special(raw: str) -> bool:
    return len(raw) > 2 and raw[0] in "[<" and raw[-1] in "]>"
