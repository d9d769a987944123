"""Property tests over arbitrary Unicode: offsets always slice back to the token text."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tagserve.text.sentences import split_sentences
from tagserve.text.tokenizer import STYLES, tokenize, tokenize_by_pattern

ANY_TEXT = st.text(
    alphabet=st.characters(exclude_categories=("Cs",)),
    max_size=300,
)
TEXT_LIKE = st.lists(
    st.one_of(
        st.sampled_from(
            [
                "U.S.",
                "Mr.",
                "don't",
                "it's",
                "1996-08-22",
                "3.5",
                "--",
                "...",
                '"',
                "(",
                ")",
                ".",
                "?",
                "\n\n",
                " ",
                "\u00a0",
                "e\u0301",
                "🙂",
                "東京",
                "\x00",
                "\u200b",
                "a" * 80,
            ]
        ),
        st.text(min_size=1, max_size=8),
    ),
    max_size=60,
).map("".join)


def check(text: str, style: str) -> None:
    tokens = tokenize(text, style)
    previous_end = 0
    for token in tokens:
        assert token.text and text[token.start : token.end] == token.text
        assert token.start >= previous_end
        assert not any(c.isspace() for c in token.text)
        previous_end = token.end
    covered = {i for t in tokens for i in range(t.start, t.end)}
    for i, char in enumerate(text):
        if i not in covered:
            assert char.isspace() or char in "\u200b\u200c\u200d\u2060\ufeff"
    sentences = split_sentences(text, tokens)
    assert [t for s in sentences for t in s] == tokens
    assert all(sentences)


@settings(max_examples=300, deadline=None)
@given(ANY_TEXT)
def test_arbitrary_unicode(text: str) -> None:
    check(text, "conll")
    check(text, "atis")


@settings(max_examples=300, deadline=None)
@given(TEXT_LIKE)
def test_text_like_inputs(text: str) -> None:
    check(text, "conll")


@settings(max_examples=400, deadline=None)
@given(st.one_of(ANY_TEXT, TEXT_LIKE))
def test_fast_path_equals_the_full_pattern(text: str) -> None:
    for style in STYLES:
        assert tokenize(text, style) == tokenize_by_pattern(text, style)


@pytest.mark.parametrize("style", STYLES)
def test_words_with_a_trailing_mark_take_the_shortcut_to_the_same_tokens(style: str) -> None:
    """A letters-only word with one mark after it, or a run of decimal digits, skips the big
    pattern: abbreviations,
    single letters, URLs and non-Latin letters must still come out as the pattern says."""
    words = [
        "Mr",
        "mr",
        "St",
        "st",
        "U",
        "A",
        "ab",
        "www",
        "http",
        "Co",
        "Corp",
        "vs",
        "etc",
        "No",
        "said",
        "Paris",
        "ÉCOLE",
        "東京",
        "I",
        "x",
        "Sept",
        "Messrs",
        "1996",
        "١٢",
        "²3",
        "3²",
    ]
    for word in words:
        for mark in ("", *',;:!?)".'):
            for context in ("{}", "a {} b", "{} B", "x {}\n", "{}\nA", "in the {}"):
                text = context.format(word + mark)
                assert tokenize(text, style) == tokenize_by_pattern(text, style), text  # type: ignore[arg-type]
