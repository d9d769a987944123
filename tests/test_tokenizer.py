"""Tokenizer rules and sentence splitting on examples written here."""

from __future__ import annotations

import pytest

from tagserve.text.sentences import split_sentences
from tagserve.text.tokenizer import tokenize

CASES = [
    (
        "Harry Potter and Hermione Granger invented a new spell",
        ["Harry", "Potter", "and", "Hermione", "Granger", "invented", "a", "new", "spell"],
    ),
    (
        "Germany's envoy doesn't like it.",
        ["Germany", "'s", "envoy", "does", "n't", "like", "it", "."],
    ),
    (
        "The U.S. and U.N. met Mr. Smith vs. J. Doe",
        ["The", "U.S.", "and", "U.N.", "met", "Mr.", "Smith", "vs.", "J.", "Doe"],
    ),
    (
        "On 1996-08-22 shares rose 3.5 percent to 1,250 ; score 6-4 , 1/2",
        [
            "On",
            "1996-08-22",
            "shares",
            "rose",
            "3.5",
            "percent",
            "to",
            "1,250",
            ";",
            "score",
            "6-4",
            ",",
            "1/2",
        ],
    ),
    (
        "A 30-year-old pro-democracy leader, O'Brien (aged 30)",
        ["A", "30-year-old", "pro-democracy", "leader", ",", "O'Brien", "(", "aged", "30", ")"],
    ),
    ('He said "no" -- twice...', ["He", "said", '"', "no", '"', "--", "twice", "..."]),
    ("It cost $5 or 10% at AT&T", ["It", "cost", "$", "5", "or", "10", "%", "at", "AT&T"]),
    ("He moved to the U.S.", ["He", "moved", "to", "the", "U.S", "."]),
    (
        "1. Jesper Ronnback ( Sweden ) .778",
        ["1.", "Jesper", "Ronnback", "(", "Sweden", ")", ".778"],
    ),
    (
        "see https://example.com/a?b=1, or mail me@example.org.",
        ["see", "https://example.com/a?b=1", ",", "or", "mail", "me@example.org", "."],
    ),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_conll_rules(text: str, expected: list[str]) -> None:
    tokens = tokenize(text)
    assert [t.text for t in tokens] == expected
    assert all(text[t.start : t.end] == t.text for t in tokens)


def test_atis_style_keeps_contractions() -> None:
    text = "i'd like what's cheapest from st. louis at 5 o'clock"
    assert [t.text for t in tokenize(text, "atis")] == [
        "i'd", "like", "what's", "cheapest", "from", "st.", "louis", "at", "5", "o'clock",
    ]  # fmt: skip


def test_unicode_offsets() -> None:
    text = "Café 東京 in Zürich 🙂🙂 e\u0301t\u00e9\u00a0x\u3000y\u200bz"
    tokens = tokenize(text)
    assert [t.text for t in tokens] == [
        "Café",
        "東京",
        "in",
        "Zürich",
        "🙂",
        "🙂",
        "e\u0301t\u00e9",
        "x",
        "y",
        "z",
    ]
    assert [(t.start, t.end) for t in tokens][4] == (text.index("🙂"), text.index("🙂") + 1)
    assert all(text[t.start : t.end] == t.text for t in tokens)


def test_unknown_style() -> None:
    with pytest.raises(
        ValueError, match="unknown tokenizer style 'klingon': expected one of conll, atis"
    ):
        tokenize("x", "klingon")


def test_sentences_of_a_document() -> None:
    text = (
        "Mr. Smith went to the U.S. last week. He met officials there!\n\n"
        'Second paragraph without a full stop\n\nThird: "Quoted end." Then more? Yes.'
    )
    tokens = tokenize(text)
    sentences = split_sentences(text, tokens)
    rendered = [text[s[0].start : s[-1].end] for s in sentences]
    assert rendered == [
        "Mr. Smith went to the U.S. last week.",
        "He met officials there!",
        "Second paragraph without a full stop",
        'Third: "Quoted end."',
        "Then more?",
        "Yes.",
    ]
    assert [t for s in sentences for t in s] == tokens


def test_no_split_after_abbreviation_before_lowercase() -> None:
    text = "Talks in the U.S. ended. the end"
    sentences = split_sentences(text, tokenize(text))
    assert len(sentences) == 1
