"""Annotation-tool exports (Label Studio JSON and JSON-MIN, doccano JSONL, Prodigy/spaCy span
JSONL) → gold character spans (:func:`read_records`, what ``evaluate`` scores) → BIO-tagged
examples in the served tokenizer's tokens (:func:`read_annotations`, what training reads).

Every problem is a :class:`~tagserve.training.readers.DataError` naming the file and the
record; everything skipped, trimmed, moved or dropped is counted in the :class:`ReadReport`.
"""

from __future__ import annotations

from pathlib import Path

from tagserve.training.annotations.align import align_record, align_records
from tagserve.training.annotations.doccano import read_doccano
from tagserve.training.annotations.formats import detect_format, detect_or_explain, load_items
from tagserve.training.annotations.label_studio import read_label_studio, read_label_studio_min
from tagserve.training.annotations.records import (
    ANNOTATION_FORMATS,
    AnnotationFormat,
    AnnotationOptions,
    SpanRecord,
)
from tagserve.training.annotations.report import ReadReport
from tagserve.training.annotations.spans import read_spans
from tagserve.training.readers import DataError, Example

__all__ = [
    "ANNOTATION_FORMATS",
    "DEFAULT_OPTIONS",
    "AnnotationFormat",
    "AnnotationOptions",
    "ReadReport",
    "SpanRecord",
    "align_record",
    "align_records",
    "detect_format",
    "read_annotations",
    "read_records",
]

# Frozen, so one instance serves every call that takes the defaults.
DEFAULT_OPTIONS = AnnotationOptions()
_READERS = {
    "label-studio": read_label_studio,
    "label-studio-min": read_label_studio_min,
    "doccano": read_doccano,
    "spans": read_spans,
}


def read_records(
    path: Path,
    fmt: AnnotationFormat | None = None,
    options: AnnotationOptions = DEFAULT_OPTIONS,
) -> tuple[list[SpanRecord], ReadReport]:
    """The gold texts and character spans of an export (``fmt`` None: by its content)."""
    path = Path(path)
    if fmt is not None and fmt not in _READERS:
        raise ValueError(f"unknown annotation format {fmt!r}: expected {', '.join(_READERS)}")
    items = load_items(path)
    found = fmt or detect_or_explain(path, items)
    report = ReadReport(path=str(path), format=found, tokenizer=options.tokenizer)
    records = _READERS[found](path, items, options, report)
    if not records:
        why = "; ".join(report.lines()[1:]) or "the file holds no records"
        raise DataError(path, None, f"no annotated records found ({why})")
    return records, report


def read_annotations(
    path: Path,
    fmt: AnnotationFormat | None = None,
    options: AnnotationOptions = DEFAULT_OPTIONS,
) -> tuple[list[Example], ReadReport]:
    """An export as training examples: BIO tags over the served tokenizer's tokens."""
    records, report = read_records(path, fmt, options)
    examples = align_records(records, options, report)
    if not examples:
        raise DataError(path, None, "no record has any token")
    return examples, report
