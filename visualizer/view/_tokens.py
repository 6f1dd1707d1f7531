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
  written in GPT-2's 256-character byte alphabet (``Ġ`` a space, ``Ċ`` a newline); the
  pieces are decoded back to UTF-8 in sequence, so a character split over pieces (``"æĹ"``,
  ``"¥"``) goes whole to the piece that completes it, and a piece holding only the start of
  one has the text ``""``;
- ``"sentencepiece"``: T5, ALBERT, Llama 2, XLM-R: ``▁`` stands for a space;
- ``"wordpiece"``: BERT and its kin: ``##`` opens a piece that continues a word, and closing
  ``. , ! ?`` take no space before them, nor an apostrophe around it, as transformers'
  ``clean_up_tokenization`` has it (``[CLS]`` or ``[SEP]`` alone also mark WordPiece).

Laid out as prose, ``"".join((" " if t.space else "") + t.text for t in tokens)`` is the
decoded text (after the first token's space, which a decoder drops).

Pass ``scheme=`` to say it instead: ``"words"`` for tokens that are whole words (a space
before each but the first, as the induction demo's), or ``"raw"`` to show the pieces as they
are, run together.
"""

from __future__ import annotations

import codecs
import functools
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["SCHEMES", "Token", "detect_scheme", "pretty_tokens"]

SCHEMES = ("bytelevel", "sentencepiece", "wordpiece", "words", "raw")


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
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
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
    if any(t.startswith("##") and len(t) > 2 or t in ("[CLS]", "[SEP]") for t in tokens):
        return "wordpiece"
    return "raw"


def pretty_tokens(tokens: Sequence[str], scheme: str | None = None) -> list[Token]:
    """``tokens`` as :class:`Token` objects; ``scheme``: one of :data:`SCHEMES`, None to read it from them."""
    if scheme is None:
        scheme = detect_scheme(tokens)
    elif scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {', '.join(map(repr, SCHEMES))} or None; got {scheme!r}")
    if scheme == "bytelevel":
        return _byte_level(tokens)
    result = [_pretty(token, scheme, first=position == 0) for position, token in enumerate(tokens)]
    if scheme == "wordpiece":  # "aren ' t" reads "aren't", as the tokenizer's clean-up has it
        for position, token in enumerate(result):
            if token.raw == "'" and 0 < position < len(result) - 1:
                after = result[position + 1]
                result[position] = Token("'", False, "'")
                result[position + 1] = Token(after.text, False, after.raw)
    return result


def _byte_level(tokens: Sequence[str]) -> list[Token]:
    # One incremental decoder over the whole sequence: the bytes of a character may be spread over
    # several pieces, and the character is shown by the piece that completes it.
    decoder, table = codecs.getincrementaldecoder("utf-8")(errors="replace"), _byte_decoder()
    result = []
    for raw in tokens:
        if not raw or not all(ch in table for ch in raw):  # a special token: <|endoftext|>, <s>
            decoder.reset()
            result.append(Token(raw, False, raw))
            continue
        text = decoder.decode(bytes(table[ch] for ch in raw))
        result.append(_spaced(text, raw))
    return result


def _pretty(raw: str, scheme: str, first: bool) -> Token:
    if scheme == "sentencepiece":
        return _spaced(raw.replace("▁", " "), raw)
    if scheme == "wordpiece":
        if raw.startswith("##") and len(raw) > 2:
            return Token(raw[2:], False, raw)
        return Token(raw, not first and raw not in _CLOSING, raw)
    if scheme == "words":
        return Token(raw, not first, raw)
    return Token(raw, False, raw)


# What transformers' clean_up_tokenization joins to the word before.
_CLOSING = {".", ",", "!", "?"}


def _spaced(text: str, raw: str) -> Token:
    # One leading space becomes the gap before the token; what is left is shown. A piece that is
    # only whitespace (a newline, a lone space) keeps it, so it stays visible and hoverable.
    if text.startswith(" ") and text.strip():
        return Token(text[1:], True, raw)
    return Token(text, False, raw)
