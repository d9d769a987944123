"""doccano JSONL exports: ``{"text", "label": [[start, end, "TYPE"], ...]}`` (sequence
labelling), ``"entities"`` as ``{start_offset, end_offset, label}`` objects or triples
(relation and intent-slot projects), ``"cats"`` (or string items of ``label``) for the text's
class. doccano counts offsets in UTF-16 code units unless the project used grapheme mode."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tagserve.training.annotations.formats import Item
from tagserve.training.annotations.records import AnnotationOptions, SpanRecord, Where
from tagserve.training.annotations.report import ReadReport
from tagserve.training.annotations.spanfix import RawSpan, has_astral, make_record


def read_doccano(
    path: Path, items: list[Item], options: AnnotationOptions, report: ReadReport
) -> list[SpanRecord]:
    """Records from a doccano export; every line is one text (doccano marks no skip)."""
    records = []
    for item in items:
        where = Where(path, item.line, f"record {item.position}")
        record = item.value
        if not isinstance(record, dict):
            raise where.error("expected a JSON object with 'text'")
        key = options.text_field or "text"
        if key not in record:
            raise where.error(f"no {key!r} field holding the text")
        spans: list[RawSpan] = []
        categories: list[Any] = []
        for field in ("label", "entities"):
            value = record.get(field, [])
            if not isinstance(value, list):
                raise where.error(f"{field!r} must be a list, got {value!r}")
            for n, entry in enumerate(value, start=1):
                if isinstance(entry, str):
                    categories.append(entry)
                else:
                    spans.append(_span(where, f"{field} {n}", entry))
        cats = record.get("cats", [])
        if not isinstance(cats, list):
            raise where.error(f"'cats' must be a list of class names, got {cats!r}")
        categories.extend(c.get("label") if isinstance(c, dict) else c for c in cats)
        report.extra_choices += len(categories) > 1
        if categories:
            report.intent_from("'cats'" if cats else "string items of 'label'")
        made = make_record(
            where, record[key], spans, categories[0] if categories else None, options, report
        )
        if options.offsets == "codepoints" and made.spans and has_astral(made.text):
            report.astral_records += 1
        records.append(made)
    return records


def _span(where: Where, name: str, entry: Any) -> RawSpan:
    if isinstance(entry, list) and len(entry) == 3:
        return RawSpan(entry[0], entry[1], entry[2], None, name)
    if isinstance(entry, dict) and {"start_offset", "end_offset", "label"} <= entry.keys():
        return RawSpan(entry["start_offset"], entry["end_offset"], entry["label"], None, name)
    raise where.error(
        f"{name}: expected [start, end, label] or {{start_offset, end_offset, label}}, "
        f"got {entry!r}"
    )
