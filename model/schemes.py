"""Tagging schemes (BIO/IOB2 and BIOES) as pure data: conversion, span decoding, transitions.

Kept free of torch so the service, the trainer and the tests share one definition of what
a well-formed tag sequence is.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Literal, get_args

Scheme = Literal["BIO", "BIOES"]
SCHEMES: tuple[Scheme, ...] = get_args(Scheme)
OUTSIDE = "O"


@dataclass(frozen=True, slots=True)
class Span:
    """An entity over tokens ``[start, end)`` (end exclusive)."""

    label: str
    start: int
    end: int


def split_tag(tag: str) -> tuple[str, str]:
    """Split ``"B-PER"`` into ``("B", "PER")``; ``"O"`` gives ``("O", "")``."""
    if tag == OUTSIDE:
        return OUTSIDE, ""
    prefix, sep, label = tag.partition("-")
    if not sep or prefix not in {"B", "I", "E", "S"} or not label:
        raise ValueError(
            f"malformed tag {tag!r}: expected 'O' or PREFIX-LABEL with PREFIX in B,I,E,S"
        )
    return prefix, label


def check_scheme(scheme: str) -> Scheme:
    """Return ``scheme`` if known, else raise naming the accepted values."""
    if scheme not in SCHEMES:
        raise ValueError(f"unknown tagging scheme {scheme!r}: expected one of {', '.join(SCHEMES)}")
    return scheme  # type: ignore[return-value]


def repair_bio(tags: list[str]) -> list[str]:
    """Turn an ``I-X`` that does not continue an ``X`` entity into ``B-X`` (conlleval's reading)."""
    repaired: list[str] = []
    previous_label = ""
    for tag in tags:
        prefix, label = split_tag(tag)
        if prefix == "I" and previous_label != label:
            tag = f"B-{label}"
        repaired.append(tag)
        previous_label = label if prefix in {"B", "I"} else ""
    return repaired


def bio_to_bioes(tags: list[str]) -> list[str]:
    """Convert IOB2 tags to BIOES; a stray ``I-X`` is read as the start of a new entity."""
    spans = spans_from_tags(tags, "BIO")
    return tags_from_spans(spans, len(tags), "BIOES")


def bioes_to_bio(tags: list[str]) -> list[str]:
    """Convert BIOES tags to IOB2."""
    return bio_tags_and_spans(tags, "BIOES")[0]


@lru_cache(maxsize=4096)
def _tag_parts(tag: str) -> tuple[str, str, str, str]:
    """``(prefix, label, "B-label", "I-label")`` of a tag, memoised: a model has a few
    dozen tags and the service decodes every token's."""
    prefix, label = split_tag(tag)
    return prefix, label, f"B-{label}", f"I-{label}"


def bio_tags_and_spans(tags: list[str], scheme: Scheme) -> tuple[list[str], list[Span]]:
    """The spans of :func:`spans_from_tags` and the same spans written as IOB2 tags, in one
    pass (what the service needs of every sentence it tags); the one place the lenient
    decoding rule is written."""
    bio: list[str] = []
    spans: list[Span] = []
    open_label: str | None = None
    open_start = 0
    closes_at_end_or_single = scheme == "BIOES"
    for i, tag in enumerate(tags):
        if tag == OUTSIDE:
            if open_label is not None:
                spans.append(Span(open_label, open_start, i))
                open_label = None
            bio.append(OUTSIDE)
            continue
        prefix, label, begin, inside = _tag_parts(tag)
        if open_label is not None and (prefix in "BS" or label != open_label):
            spans.append(Span(open_label, open_start, i))
            open_label = None
        if open_label is None:
            open_label, open_start = label, i
            bio.append(begin)
        else:
            bio.append(inside)
        if closes_at_end_or_single and prefix in "ES":
            spans.append(Span(label, open_start, i + 1))
            open_label = None
    if open_label is not None:
        spans.append(Span(open_label, open_start, len(tags)))
    return bio, spans


def convert(tags: list[str], source: Scheme, target: Scheme) -> list[str]:
    """Convert between schemes; BIO input is repaired on the way (see :func:`repair_bio`)."""
    if source == target:
        return repair_bio(tags) if source == "BIO" else list(tags)
    return bio_to_bioes(tags) if source == "BIO" else bioes_to_bio(tags)


def tags_from_spans(spans: list[Span], length: int, scheme: Scheme) -> list[str]:
    """Write spans as a tag sequence of ``length`` tokens in ``scheme``."""
    tags = [OUTSIDE] * length
    for span in spans:
        if span.end - span.start == 1 and scheme == "BIOES":
            tags[span.start] = f"S-{span.label}"
            continue
        tags[span.start] = f"B-{span.label}"
        for i in range(span.start + 1, span.end):
            tags[i] = f"I-{span.label}"
        if scheme == "BIOES":
            tags[span.end - 1] = f"E-{span.label}"
    return tags


def spans_from_tags(tags: list[str], scheme: Scheme) -> list[Span]:
    """Decode entity spans leniently, as conlleval does: ill-formed sequences still yield spans.

    A new span starts at B/S, or at I/E whose label differs from the open span's; a span
    closes at E/S, at O, or when the next tag starts a new one.
    """
    return bio_tags_and_spans(tags, scheme)[1]


def first_violation(tags: list[str], scheme: Scheme) -> tuple[int, str] | None:
    """Return ``(index, reason)`` of the first transition the scheme forbids, or ``None``."""
    previous = "START"
    for i, tag in enumerate([*tags, "END"]):
        if tag != "END":
            prefix, _ = split_tag(tag)
            if scheme == "BIO" and prefix in {"E", "S"}:
                return i, f"tag {tag!r} is not a BIO tag"
        if not _is_allowed(previous, tag, scheme):
            where = "the end" if tag == "END" else repr(tag)
            return min(i, len(tags) - 1), f"{where} may not follow {previous!r} in {scheme}"
        previous = tag
    return None


def labels_for(entity_types: list[str], scheme: Scheme) -> list[str]:
    """The full tag list for entity types, ``O`` first, types in the given order."""
    prefixes = ("B", "I") if scheme == "BIO" else ("B", "I", "E", "S")
    return [OUTSIDE] + [f"{p}-{t}" for t in entity_types for p in prefixes]


def entity_types(labels: list[str]) -> list[str]:
    """Entity types in first-seen order of a tag list."""
    seen: dict[str, None] = {}
    for tag in labels:
        _, label = split_tag(tag)
        if label:
            seen.setdefault(label, None)
    return list(seen)


def allowed_transitions(labels: list[str], scheme: Scheme) -> set[tuple[int, int]]:
    """All allowed ``(from, to)`` index pairs; index ``len(labels)`` is START, ``+1`` is END.

    Mirrors AllenNLP's ``allowed_transitions``: the CRF turns this into a constraint mask.
    """
    start, end = len(labels), len(labels) + 1
    named = {**dict(enumerate(labels)), start: "START", end: "END"}
    allowed: set[tuple[int, int]] = set()
    for i, from_tag in named.items():
        if from_tag == "END":
            continue
        for j, to_tag in named.items():
            if to_tag == "START":
                continue
            if _is_allowed(from_tag, to_tag, scheme):
                allowed.add((i, j))
    return allowed


def _is_allowed(from_tag: str, to_tag: str, scheme: Scheme) -> bool:
    if from_tag == "START" and to_tag == "END":
        return True
    from_prefix, from_label = ("START", "") if from_tag == "START" else split_tag(from_tag)
    to_prefix, to_label = ("END", "") if to_tag == "END" else split_tag(to_tag)
    # Entity continuations must carry on an open entity of the same type.
    continues = to_prefix in {"I", "E"}
    if scheme == "BIO":
        if continues:
            return from_prefix in {"B", "I"} and from_label == to_label
        return True
    # BIOES: an open entity (after B or I) must continue with I or E of its type.
    entity_open = from_prefix in {"B", "I"}
    if entity_open:
        return continues and from_label == to_label
    return not continues
