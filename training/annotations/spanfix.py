"""From the spans an export wrote to a :class:`SpanRecord`: offsets converted to code points
and checked against the text (and against the span text the export recorded), labels
checked, whitespace at span edges trimmed, repeats merged, overlaps refused or resolved."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, NamedTuple

from tagserve.training.annotations.records import (
    AnnotationOptions,
    Offsets,
    Overlaps,
    SpanRecord,
    Where,
)
from tagserve.training.annotations.report import ReadReport
from tagserve.training.readers import DataError

# Zero-width format characters separate tokens like spaces do (tagserve.text.tokenizer).
_ZERO_WIDTH = frozenset("\u200b\u200c\u200d\u2060\ufeff")
_ASTRAL = re.compile("[\U00010000-\U0010ffff]")


class RawSpan(NamedTuple):
    """A span as the export wrote it (nothing checked yet); ``name`` says which, for errors."""

    start: Any
    end: Any
    label: Any
    text: Any
    name: str


class Placed(NamedTuple):
    """A checked span over ``[start, end)`` (characters or tokens); ``shown`` names it."""

    start: int
    end: int
    label: str
    shown: str


def make_record(
    where: Where,
    text: Any,
    raw: list[RawSpan],
    intent: Any,
    options: AnnotationOptions,
    report: ReadReport,
) -> SpanRecord:
    """Check one record's text, spans and intent, count it, and return it."""
    if not isinstance(text, str):
        raise where.error(f"the text must be a string, got {type(text).__name__}")
    if intent is not None and (not isinstance(intent, str) or not intent.strip()):
        raise where.error(f"the intent must be a non-empty string, got {intent!r}")
    to_codepoints = _offset_converter(where, text, options.offsets)
    placed: list[Placed] = []
    for span in raw:
        label = check_label(where, span)
        start, end = _offsets(where, text, span, to_codepoints, options.offsets)
        if span.text is not None:
            _check_recorded_text(where, text, span, start, end, options.offsets)
        trimmed_start, trimmed_end = trim(text, start, end)
        if trimmed_start >= trimmed_end:
            report.note(
                "empty_dropped",
                f"{where}: {span.name} {text[start:end]!r} ({label}) holds only whitespace",
            )
            continue
        if (trimmed_start, trimmed_end) != (start, end):
            report.trimmed += 1
        shown = f"{text[trimmed_start:trimmed_end]!r} ({label}, {trimmed_start}-{trimmed_end})"
        placed.append(Placed(trimmed_start, trimmed_end, label, shown))
    # The same label twice on the same characters (two labelling passes): one span.
    unique = list({(p.start, p.end, p.label): p for p in placed}.values())
    report.duplicates += len(placed) - len(unique)
    placed = resolve_overlaps(unique, options.overlaps, str(where), where.error, report)
    report.records += 1
    if not placed:
        report.without_spans += 1
    for span_ in placed:
        report.add_label(span_.label)
    return SpanRecord(text, [(p.start, p.end, p.label) for p in placed], intent, str(where), where)


def check_label(where: Where, span: RawSpan) -> str:
    """A label becomes tags ``B-LABEL``/``I-LABEL``: a non-empty string without whitespace
    (CoNLL and seq.out files separate tags by whitespace)."""
    label = span.label
    if not isinstance(label, str) or not label:
        raise where.error(f"{span.name}: the label must be a non-empty string, got {label!r}")
    if any(char.isspace() for char in label):
        fixed = "_".join(label.split())
        raise where.error(
            f"{span.name}: label {label!r} contains whitespace; tags are written B-LABEL in "
            f"whitespace-separated files, so rename it in the annotation tool (e.g. {fixed!r})"
        )
    return label


def has_astral(text: str) -> bool:
    """Whether ``text`` holds characters UTF-16 writes as two units (most emoji)."""
    return _ASTRAL.search(text) is not None


def trim(text: str, start: int, end: int) -> tuple[int, int]:
    """``[start, end)`` without whitespace or zero-width characters at either edge."""
    while start < end and (text[start].isspace() or text[start] in _ZERO_WIDTH):
        start += 1
    while end > start and (text[end - 1].isspace() or text[end - 1] in _ZERO_WIDTH):
        end -= 1
    return start, end


def resolve_overlaps(
    spans: list[Placed],
    policy: Overlaps,
    where: str,
    error: Callable[[str], DataError],
    report: ReadReport,
    after: str = "",
) -> list[Placed]:
    """Spans sorted by start; overlapping ones are an error, or only the longest of them is
    kept (the earlier one on a tie), the others dropped and counted."""
    ordered = sorted(spans, key=lambda s: (s.start, s.end))
    clash = _first_overlap(ordered)
    if clash is None:
        return ordered
    if policy == "error":
        first, second = clash
        raise error(
            f"spans {first.shown} and {second.shown} overlap{after}; one token carries one "
            "tag: fix the annotation, or read with overlaps 'longest' to keep the longer"
        )
    kept: list[Placed] = []
    for span in sorted(spans, key=lambda s: s.start - s.end):  # stable: file order on ties
        other = next((k for k in kept if k.start < span.end and span.start < k.end), None)
        if other is None:
            kept.append(span)
            continue
        report.note(
            "overlaps_dropped", f"{where}: span {span.shown} dropped{after}: overlaps {other.shown}"
        )
    return sorted(kept, key=lambda s: (s.start, s.end))


def _first_overlap(ordered: list[Placed]) -> tuple[Placed, Placed] | None:
    widest: Placed | None = None
    for span in ordered:
        if widest is not None and span.start < widest.end:
            return widest, span
        if widest is None or span.end > widest.end:
            widest = span
    return None


def _offsets(
    where: Where,
    text: str,
    span: RawSpan,
    to_codepoints: Callable[[int, str], int],
    offsets: Offsets,
) -> tuple[int, int]:
    for name, value in (("start", span.start), ("end", span.end)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise where.error(f"{span.name}: {name} must be an integer offset, got {value!r}")
    start, end = to_codepoints(span.start, "start"), to_codepoints(span.end, "end")
    if not 0 <= start < end <= len(text):
        raise where.error(
            f"{span.name} ({span.label}): offsets {span.start}-{span.end} do not delimit a "
            f"span of the text ({len(text)} characters): need 0 <= start < end <= length"
            + _unit_hint(text, span, offsets)
        )
    return start, end


def _offset_converter(where: Where, text: str, offsets: Offsets) -> Callable[[int, str], int]:
    """Code points as they are; UTF-16 units mapped to code points (an emoji counts two)."""
    if offsets == "codepoints" or not has_astral(text):
        return lambda value, _: value
    positions = _utf16_positions(text)
    units = max(positions)

    def convert(value: int, name: str) -> int:
        if value in positions:
            return positions[value]
        if 0 < value < units:
            raise where.error(
                f"{name} offset {value} falls inside a character UTF-16 writes as two units: "
                "are the offsets code points? (read with offsets codepoints)"
            )
        return value + len(text) - units  # out of range either way: refused later

    return convert


def _utf16_positions(text: str) -> dict[int, int]:
    positions, units = {0: 0}, 0
    for index, char in enumerate(text, start=1):
        units += 2 if ord(char) > 0xFFFF else 1
        positions[units] = index
    return positions


def _check_recorded_text(
    where: Where, text: str, span: RawSpan, start: int, end: int, offsets: Offsets
) -> None:
    if not isinstance(span.text, str):
        raise where.error(f"{span.name}: its recorded text must be a string, got {span.text!r}")
    if text[start:end] != span.text:
        raise where.error(
            f"{span.name} ({span.label}) at {span.start}-{span.end}: the export records its "
            f"text as {span.text!r} but the text there is {text[start:end]!r}"
            + _unit_hint(text, span, offsets)
        )


def _unit_hint(text: str, span: RawSpan, offsets: Offsets) -> str:
    """Where the export recorded the span's text and the offsets read in the other unit
    find it, say so: that is a UTF-16/code-point mix-up."""
    if not isinstance(span.text, str):
        return ""
    if offsets == "codepoints" and has_astral(text):
        positions = _utf16_positions(text)
        a, b = positions.get(span.start), positions.get(span.end)
        if a is not None and b is not None and text[a:b] == span.text:
            return "; the offsets count UTF-16 code units: read with offsets utf16"
    elif offsets == "utf16" and text[span.start : span.end] == span.text:
        return "; the offsets count code points: read with offsets codepoints"
    return ""
