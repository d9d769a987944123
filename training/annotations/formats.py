"""Loading an export (a JSON array or JSON lines) and telling its format by its content."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

from tagserve.training.annotations.records import AnnotationFormat
from tagserve.training.readers import DataError

# Records looked at to tell the format: the first one with a telling key decides.
_DETECT_RECORDS = 50


class Item(NamedTuple):
    """One record of an export: its line (JSON lines) or None (JSON array), its 1-based
    position, and its parsed value."""

    line: int | None
    position: int
    value: Any


def load_items(path: Path) -> list[Item]:
    """Every record of a JSON array file, or of a JSON-lines file (blank lines skipped)."""
    text = _read_text(path)
    if text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise DataError(
                path, error.lineno, f"not valid JSON: {error.msg} (column {error.colno})"
            ) from None
        return [Item(None, i, value) for i, value in enumerate(data, start=1)]
    items: list[Item] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as error:
            if not items:
                single = _single_object(text)  # one pretty-printed task, not JSON lines
                if single is not None:
                    return [Item(None, 1, single)]
            raise DataError(
                path, number, f"not valid JSON: {error.msg} (column {error.colno})"
            ) from None
        items.append(Item(number, len(items) + 1, value))
    return items


def detect_format(path: Path) -> AnnotationFormat | None:
    """The export format by content: a JSON array of Label Studio tasks (``data`` and
    ``annotations``) or of its JSON-MIN flat records, doccano JSONL (``label``, ``entities``
    or ``cats``) or span JSONL (``spans``: Prodigy, spaCy). None: not an annotation file."""
    try:
        return detect_items(load_items(Path(path)))
    except DataError:
        return None


def detect_or_explain(path: Path, items: list[Item] | None = None) -> AnnotationFormat:
    """:func:`detect_format` (of ``items`` when loaded already), or a :class:`DataError`
    saying why the file is none of them."""
    items = load_items(path) if items is None else items
    found = detect_items(items)
    if found is None:
        raise DataError(
            path,
            None,
            "not an annotation export this reader knows: expected a Label Studio JSON or "
            "JSON-MIN export (records with 'data' and 'annotations', or flat records with a "
            "list of {start, end, labels}), doccano JSONL ('text' with 'label' or "
            "'entities') or spans JSONL ('text' with 'spans')"
            + ("" if items else "; the file holds no records"),
        )
    return found


def detect_items(items: list[Item]) -> AnnotationFormat | None:
    """The format the first telling record of ``items`` has."""
    for item in items[:_DETECT_RECORDS]:
        found = _detect_record(item.value)
        if found is not None:
            return found
    return None


def is_region_list(value: Any) -> bool:
    """A JSON-MIN value holding spans: a non-empty list of ``{start, end, labels}``."""
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(v, dict) and {"start", "end", "labels"} <= v.keys() for v in value)
    )


def _detect_record(record: Any) -> AnnotationFormat | None:
    if not isinstance(record, dict):
        return None
    if isinstance(record.get("data"), dict) and (
        {"annotations", "completions", "predictions"} & record.keys()
    ):
        return "label-studio"
    if "annotation_id" in record or any(is_region_list(v) for v in record.values()):
        return "label-studio-min"
    if isinstance(record.get("spans"), list):
        return "spans"
    if isinstance(record.get("label"), list) or isinstance(record.get("entities"), list):
        return "doccano"
    if isinstance(record.get("cats"), list) and "text" in record:
        return "doccano"
    return None


def _single_object(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _read_text(path: Path) -> str:
    try:
        # utf-8-sig: a byte-order mark (some Windows tools write one) is not part of the JSON.
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataError(path, None, "file not found") from None
    except IsADirectoryError:
        raise DataError(path, None, "is a directory, not an annotation export") from None
    except UnicodeDecodeError as error:
        raise DataError(
            path, None, f"not UTF-8 text ({error.reason} at byte {error.start})"
        ) from None
