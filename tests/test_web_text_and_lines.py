"""Web text (handles, hashtags, URLs, e-mail addresses as single tokens, never inside an
entity) and line breaks as sentence boundaries in real-looking documents."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from tagserve.text.sentences import split_sentences
from tagserve.text.tokenizer import is_identifier, tokenize, tokenize_by_pattern
from tests.service_helpers import tiny_app

TWEET = "RT @taylorswift13: tickets for #ErasTour in London https://t.co/abc123"


def words(text: str) -> list[str]:
    return [t.text for t in tokenize(text)]


def sentences(text: str) -> list[str]:
    return [" ".join(t.text for t in s) for s in split_sentences(text, tokenize(text))]


def test_handles_hashtags_urls_and_emails_are_single_tokens() -> None:
    assert words(TWEET) == [
        "RT", "@taylorswift13", ":", "tickets", "for", "#ErasTour", "in", "London",
        "https://t.co/abc123",
    ]  # fmt: skip
    assert words("mail bob.smith@example.co.uk or @bob_1 about #x1, #1 and C#") == [
        "mail", "bob.smith@example.co.uk", "or", "@bob_1", "about", "#x1", ",", "#", "1",
        "and", "C", "#",
    ]  # fmt: skip
    assert [is_identifier(w) for w in ["@bob", "#Tour", "#1", "@", "#", "bob", "www.x.org"]] == [
        True, True, False, False, False, False, True,
    ]  # fmt: skip


handle = st.from_regex(r"@[A-Za-z0-9_]{1,15}", fullmatch=True)
hashtag = st.from_regex(r"#[A-Za-z][A-Za-z0-9_]{0,20}", fullmatch=True)
word = st.from_regex(r"[A-Za-z]{1,10}", fullmatch=True)


@given(
    st.lists(st.one_of(handle, hashtag, word), min_size=1, max_size=12), st.sampled_from(" \n\t")
)
def test_web_tokens_keep_exact_offsets(pieces: list[str], separator: str) -> None:
    text = separator.join(pieces)
    tokens = tokenize(text)
    assert [t.text for t in tokens] == pieces
    assert all(text[t.start : t.end] == t.text for t in tokens)
    assert tokens == tokenize_by_pattern(text)


def test_no_identifier_is_ever_inside_an_entity(tiny_artifact: Path) -> None:
    # The tiny model's tags are random: whatever it says, identifiers stay out of entities.
    texts = [TWEET, "harry @potter granger #harry the https://x.org/harry harry", "a@b.co harry"]
    with TestClient(tiny_app(tiny_artifact.parent)) as client:
        results = client.post("/tag", json={"texts": texts * 5}).json()["results"]
    for result in results:
        for token in result["tokens"]:
            if is_identifier(token["text"]):
                assert (token["tag"], token["score"]) == ("O", 1.0)
        for entity in result["entities"]:
            assert not any(is_identifier(piece) for piece in entity["text"].split())
        tags = [t["tag"] for t in result["tokens"]]
        for previous, tag in zip(["O", *tags], tags, strict=False):
            if tag.startswith("I-"):
                assert previous[2:] == tag[2:], tags


def test_a_news_article_with_headline_and_dateline() -> None:
    article = (
        "Japan began the defence of their Asian Cup title with a win\n"
        "AL-AIN , United Arab Emirates 1996-12-06\n"
        "Japan began the defence of their Asian Cup title with a lucky 2-1 win against Syria in"
        " a Group C championship match on Friday.\n"
        "But China saw their luck desert them in the second match of the group."
    )
    assert sentences(article) == [
        "Japan began the defence of their Asian Cup title with a win",
        "AL-AIN , United Arab Emirates 1996-12-06",
        "Japan began the defence of their Asian Cup title with a lucky 2-1 win against Syria in"
        " a Group C championship match on Friday .",
        "But China saw their luck desert them in the second match of the group .",
    ]


def test_a_bulleted_list_and_a_table() -> None:
    assert sentences("Winners\n- Roger Federer\n* Serena Williams\n1. Rafael Nadal") == [
        "Winners", "- Roger Federer", "* Serena Williams", "1. Rafael Nadal",
    ]  # fmt: skip
    assert sentences("Arsenal 3 1 0\nChelsea 2 1 1\nLiverpool 1 2 1") == [
        "Arsenal 3 1 0", "Chelsea 2 1 1", "Liverpool 1 2 1",
    ]  # fmt: skip


def test_wrapped_prose_stays_one_sentence() -> None:
    prose = (
        "The committee met in Geneva on Tuesday and decided to postpone\n"
        "the vote on the new budget until Friday, when the ministers of\n"
        "France and Germany will be back from their trip to New York."
    )
    assert len(sentences(prose)) == 1
    lower = prose.lower()
    assert len(sentences(lower)) == 1
