"""Span JSONL (Prodigy, spaCy): ``{"text", "spans": [{"start", "end", "label"}]}``, code-point
offsets; ``token_start``/``token_end`` are the tool's own tokens and are not used (the text
is tokenized again, as the served model tokenizes it). Prodigy's ``answer: "reject"`` or
``"ignore"`` records are not training data; ``cats`` (spaCy's class scores, or a list)
gives the intent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tagserve.training.annotations.formats import Item
from tagserve.training.annotations.records import AnnotationOptions, SpanRecord, Where
from tagserve.training.annotations.report import ReadReport
from tagserve.training.annotations.spanfix import RawSpan, make_record

_NOT_GOLD = frozenset({"reject", "ignore"})


def read_spans(
    path: Path, items: list[Item], options: AnnotationOptions, report: ReadReport
) -> list[SpanRecord]:
    """Records from span JSONL; rejected and ignored answers are skipped and counted."""
    records = []
    for item in items:
        where = Where(path, item.line, f"record {item.position}")
        record = item.value
        if not isinstance(record, dict):
            raise where.error("expected a JSON object with 'text' and 'spans'")
        if record.get("answer") in _NOT_GOLD:
            report.skipped_rejected += 1
            continue
        key = options.text_field or "text"
        if key not in record:
            raise where.error(f"no {key!r} field holding the text")
        entries = record.get("spans", [])
        if not isinstance(entries, list):
            raise where.error(f"'spans' must be a list, got {entries!r}")
        spans = [_span(where, n, entry) for n, entry in enumerate(entries, start=1)]
        intent = _intent(where, record.get("cats"), report)
        records.append(make_record(where, record[key], spans, intent, options, report))
    return records


def _span(where: Where, n: int, entry: Any) -> RawSpan:
    if not isinstance(entry, dict) or not {"start", "end", "label"} <= entry.keys():
        raise where.error(f"span {n}: expected an object with start, end and label, got {entry!r}")
    return RawSpan(entry["start"], entry["end"], entry["label"], entry.get("text"), f"span {n}")


def _intent(where: Where, cats: Any, report: ReadReport) -> str | None:
    """The class with the highest score (at least 0.5) of spaCy's ``cats``, or a list's first."""
    if cats is None:
        return None
    if isinstance(cats, dict):
        if not all(isinstance(v, int | float) for v in cats.values()):
            raise where.error(f"'cats' must map class names to scores, got {cats!r}")
        chosen = [k for k, v in sorted(cats.items(), key=lambda kv: -kv[1]) if v >= 0.5]
    elif isinstance(cats, list) and all(isinstance(c, str) for c in cats):
        chosen = list(cats)
    else:
        raise where.error(f"'cats' must be a list of class names or a score map, got {cats!r}")
    report.extra_choices += len(chosen) > 1
    if chosen:
        report.intent_from("'cats'")
    return chosen[0] if chosen else None
