"""pretty_tokens on what real tokenizers write, checked against the tokenizers' own decoding.

WordPiece: the offline all-MiniLM-L6-v2 tokenizer (BERT). Byte-level BPE (GPT-2's scheme) and
SentencePiece-style BPE (``▁`` for spaces): tokenizers' own classes, trained here on a few
lines, with characters of two, three and four UTF-8 bytes, newlines and tabs. The prose the
tokens make (each text, a space before it where ``space``) must be what the tokenizer decodes.
"""

import pytest

from visualizer.view._tokens import Token, detect_scheme, pretty_tokens

tokenizers = pytest.importorskip("tokenizers")

TEXTS = [
    "the cat sat on the mat",
    "naïve café über 日本 emoji 🙂",
    "hello world\n\tindented  two spaces",
]


def prose(tokens):
    return "".join((" " if t.space else "") + t.text for t in tokens)


@pytest.fixture(scope="module")
def byte_level():
    tokenizer = tokenizers.ByteLevelBPETokenizer()
    tokenizer.train_from_iterator(TEXTS * 10, vocab_size=290, min_frequency=1, show_progress=False)
    return tokenizer


@pytest.fixture(scope="module")
def sentencepiece():
    tokenizer = tokenizers.SentencePieceBPETokenizer()
    tokenizer.train_from_iterator(TEXTS * 10, vocab_size=120, min_frequency=1, show_progress=False)
    return tokenizer


@pytest.mark.parametrize("text", TEXTS)
def test_byte_level_bpe_reads_back_as_the_decoded_text(byte_level, text):
    encoding = byte_level.encode(text)
    assert detect_scheme(encoding.tokens) == "bytelevel"
    pretty = pretty_tokens(encoding.tokens)
    assert prose(pretty) == byte_level.decode(encoding.ids) == text
    assert [t.raw for t in pretty] == encoding.tokens
    assert not any(set(t.text) & set("ĠĊĉ") for t in pretty)


def test_byte_level_splits_characters_across_pieces(byte_level):
    # Hand-written pieces that split 日 (E6 97 A5), 本 (E6 9C AC) and 🙂 (F0 9F 99 82): each
    # character is shown whole, by the piece that completes it; the piece before holds none of it.
    tokens = ["Ġæ", "Ĺ¥", "æľ", "¬", "ĠðŁ", "ĻĤ"]
    pretty = pretty_tokens(tokens)
    assert [(t.text, t.space) for t in pretty] == [
        (" ", False),
        ("日", False),
        ("", False),
        ("本", False),
        (" ", False),
        ("🙂", False),
    ]
    assert prose(pretty) == " 日本 🙂"
    # A special token between pieces is kept as it is.
    pretty = pretty_tokens(["Ġhi", "<|endoftext|>", "Ġthere"], scheme="bytelevel")
    assert [(t.text, t.space) for t in pretty] == [("hi", True), ("<|endoftext|>", False), ("there", True)]


@pytest.mark.parametrize("text", TEXTS)
def test_sentencepiece_reads_back_as_the_decoded_text(sentencepiece, text):
    encoding = sentencepiece.encode(text)
    assert detect_scheme(encoding.tokens) == "sentencepiece"
    pretty = pretty_tokens(encoding.tokens)
    assert prose(pretty)[1:] == sentencepiece.decode(encoding.ids)  # a decoder drops the first space
    assert pretty[0].space and pretty[0].raw.startswith("▁")


@pytest.mark.parametrize(
    "text",
    ["Tokenizers aren't unbelievably hard, 123.45!", "He said (quietly): don't; it's 50% off.", "a b c"],
)
def test_wordpiece_of_minilm_reads_back_as_its_decoding(text):
    pytest.importorskip("transformers")
    from transformers import AutoTokenizer

    from visualizer.models._bert import minilm_folder

    tokenizer = AutoTokenizer.from_pretrained(minilm_folder())
    ids = tokenizer(text)["input_ids"]
    tokens = tokenizer.convert_ids_to_tokens(ids)
    assert detect_scheme(tokens) == "wordpiece"
    pretty = pretty_tokens(tokens)
    assert prose(pretty) == tokenizer.decode(ids, clean_up_tokenization_spaces=True)
    assert not any(t.text.startswith("##") for t in pretty)


def test_schemes_and_errors():
    assert pretty_tokens(["▁a", "b"], scheme="raw") == [Token("▁a", False, "▁a"), Token("b", False, "b")]
    assert pretty_tokens(["##a"], scheme="raw")[0].text == "##a"
    assert detect_scheme(["a", "b"]) == "raw"
    assert detect_scheme(["Ġ"]) == "bytelevel" and detect_scheme(["##ing"]) == "wordpiece"
    assert pretty_tokens([]) == []
    with pytest.raises(ValueError, match="scheme must be one of 'bytelevel', 'sentencepiece'"):
        pretty_tokens(["a"], scheme="bpe")


def test_words_are_spaced_and_raw_pieces_are_not():
    words = pretty_tokens(["<bos>", "date", "jay"], scheme="words")
    assert [(t.text, t.space, t.raw) for t in words] == [
        ("<bos>", False, "<bos>"),
        ("date", True, "date"),
        ("jay", True, "jay"),
    ]
    assert [t.space for t in pretty_tokens(["a", "b"], scheme="raw")] == [False, False]
    with pytest.raises(
        ValueError, match="scheme must be one of 'bytelevel', 'sentencepiece', 'wordpiece', 'words', 'raw'"
    ):
        pretty_tokens(["a"], scheme="word")
