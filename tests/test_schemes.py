"""Tag schemes: conversion, span decoding and the full allowed-transition sets."""

from __future__ import annotations

import random

import pytest

from tagserve.model.schemes import (
    Span,
    allowed_transitions,
    bio_tags_and_spans,
    bio_to_bioes,
    bioes_to_bio,
    first_violation,
    labels_for,
    repair_bio,
    spans_from_tags,
    tags_from_spans,
)


def test_bio_to_bioes_and_back() -> None:
    bio = ["B-PER", "I-PER", "O", "B-LOC", "B-ORG", "I-ORG", "I-ORG", "O", "B-MISC"]
    bioes = ["B-PER", "E-PER", "O", "S-LOC", "B-ORG", "I-ORG", "E-ORG", "O", "S-MISC"]
    assert bio_to_bioes(bio) == bioes
    assert bioes_to_bio(bioes) == bio


def test_round_trip_on_random_well_formed_sequences() -> None:
    rng = random.Random(0)
    for _ in range(200):
        tags: list[str] = []
        while len(tags) < 12:
            kind = rng.choice(["O", "PER", "LOC"])
            if kind == "O":
                tags.append("O")
            else:
                tags += [f"B-{kind}"] + [f"I-{kind}"] * rng.randint(0, 3)
        assert bioes_to_bio(bio_to_bioes(tags)) == tags
        assert spans_from_tags(tags, "BIO") == spans_from_tags(bio_to_bioes(tags), "BIOES")


@pytest.mark.parametrize("scheme", ["BIO", "BIOES"])
def test_one_pass_bio_and_spans_match_decoding_then_writing(scheme: str) -> None:
    # The service's one-pass decoder must agree with the two-step reading on any sequence,
    # ill-formed ones included (a softmax decoder can emit a stray I- or E-).
    rng = random.Random(1)
    vocabulary = ["O"] + [f"{p}-{t}" for p in "BIES" for t in ("PER", "LOC")]
    for _ in range(2000):
        tags = [rng.choice(vocabulary) for _ in range(rng.randint(0, 10))]
        spans = spans_from_tags(tags, scheme)  # type: ignore[arg-type]
        expected = (tags_from_spans(spans, len(tags), "BIO"), spans)
        assert bio_tags_and_spans(tags, scheme) == expected, tags  # type: ignore[arg-type]


def test_stray_inside_tag_starts_an_entity_like_conlleval() -> None:
    assert repair_bio(["O", "I-PER", "I-PER", "I-LOC"]) == ["O", "B-PER", "I-PER", "B-LOC"]
    assert spans_from_tags(["O", "I-PER", "I-PER", "I-LOC"], "BIO") == [
        Span("PER", 1, 3),
        Span("LOC", 3, 4),
    ]
    assert bio_to_bioes(["I-PER", "O"]) == ["S-PER", "O"]


def test_spans_bioes() -> None:
    tags = ["S-PER", "B-LOC", "I-LOC", "E-LOC", "O", "B-ORG", "E-ORG"]
    assert spans_from_tags(tags, "BIOES") == [
        Span("PER", 0, 1),
        Span("LOC", 1, 4),
        Span("ORG", 5, 7),
    ]


def test_allowed_transitions_bio_full_set() -> None:
    labels = ["O", "B-PER", "I-PER"]
    start, end = 3, 4
    expected = {
        (0, 0), (0, 1), (0, end),
        (1, 0), (1, 1), (1, 2), (1, end),
        (2, 0), (2, 1), (2, 2), (2, end),
        (start, 0), (start, 1), (start, end),
    }  # fmt: skip
    assert allowed_transitions(labels, "BIO") == expected


def test_allowed_transitions_bioes_full_set() -> None:
    labels = ["O", "B-PER", "I-PER", "E-PER", "S-PER"]
    o, b, i, e, s, start, end = 0, 1, 2, 3, 4, 5, 6
    expected = {
        (o, o), (o, b), (o, s), (o, end),
        (b, i), (b, e),
        (i, i), (i, e),
        (e, o), (e, b), (e, s), (e, end),
        (s, o), (s, b), (s, s), (s, end),
        (start, o), (start, b), (start, s), (start, end),
    }  # fmt: skip
    assert allowed_transitions(labels, "BIOES") == expected


def test_first_violation_names_the_position() -> None:
    assert first_violation(["O", "I-PER"], "BIO") == (1, "'I-PER' may not follow 'O' in BIO")
    assert first_violation(["B-PER", "I-LOC"], "BIO") == (
        1,
        "'I-LOC' may not follow 'B-PER' in BIO",
    )
    assert first_violation(["B-PER", "I-PER"], "BIO") is None
    assert first_violation(["B-PER"], "BIOES") == (0, "the end may not follow 'B-PER' in BIOES")


def test_labels_for() -> None:
    assert labels_for(["PER"], "BIOES") == ["O", "B-PER", "I-PER", "E-PER", "S-PER"]


@pytest.mark.parametrize("tag", ["X-PER", "B-", "PER", "B_PER"])
def test_malformed_tag_is_rejected(tag: str) -> None:
    with pytest.raises(ValueError, match="malformed tag"):
        spans_from_tags([tag], "BIO")
