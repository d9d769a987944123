"""Label Studio exports: the JSON export (a list of tasks) and JSON-MIN (one flat record per
annotation). Gold is the most recent annotation that was not cancelled; ``predictions`` are
a model's suggestions, never gold."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tagserve.training.annotations.formats import Item, is_region_list
from tagserve.training.annotations.records import AnnotationOptions, SpanRecord, Where
from tagserve.training.annotations.report import ReadReport
from tagserve.training.annotations.spanfix import RawSpan, make_record

# Keys the JSON-MIN converter adds to each record besides the task's data and the results.
_MIN_META = frozenset(
    {"id", "annotator", "annotation_id", "created_at", "updated_at", "lead_time", "agreement"}
)


def read_label_studio(
    path: Path, items: list[Item], options: AnnotationOptions, report: ReadReport
) -> list[SpanRecord]:
    """Records from a Label Studio JSON export (tasks with ``data`` and ``annotations``)."""
    records = []
    for item in items:
        task = item.value
        name = f"task {task['id']}" if isinstance(task, dict) and "id" in task else None
        where = Where(path, item.line, name or f"record {item.position}")
        if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
            raise where.error("expected a task object with a 'data' object")
        annotations = task.get("annotations", task.get("completions", []))
        if not isinstance(annotations, list) or not all(isinstance(a, dict) for a in annotations):
            raise where.error("'annotations' must be a list of objects")
        live = [a for a in annotations if not (a.get("was_cancelled") or a.get("skipped"))]
        if not annotations:
            report.skipped_unlabeled += 1
            report.predictions_only += bool(task.get("predictions"))
            continue
        if not live:
            report.skipped_cancelled += 1
            continue
        report.older_annotations += len(live) - 1
        chosen = live[most_recent(live)]
        text = task_text(where, task["data"], options.text_field)
        spans, intent = _results(where, chosen.get("result", []), options, report)
        records.append(make_record(where, text, spans, intent, options, report))
    return records


def read_label_studio_min(
    path: Path, items: list[Item], options: AnnotationOptions, report: ReadReport
) -> list[SpanRecord]:
    """Records from JSON-MIN: the task's data keys, each control's results under its name
    (spans as a list of ``{start, end, text, labels}``, one choice as a plain string, several
    as ``{"choices": [...]}``), and the annotation's id and times. Cancelled annotations are
    not in JSON-MIN at all; a task without annotations has ``annotation_id: null``."""
    groups: dict[Any, list[Item]] = {}
    for item in items:
        where = Where(path, item.line, f"record {item.position}")
        if not isinstance(item.value, dict):
            raise where.error("expected a flat JSON-MIN record (an object)")
        key = item.value.get("id", ("record", item.position))
        groups.setdefault(key if isinstance(key, int | str) else repr(key), []).append(item)
    records = []
    for group in groups.values():
        if len(group) == 1 and group[0].value.get("annotation_id", 0) is None:
            report.skipped_unlabeled += 1
            continue
        report.older_annotations += len(group) - 1
        chosen = group[most_recent([g.value for g in group])]
        records.append(_min_record(path, chosen, options, report))
    return records


def _min_record(
    path: Path, item: Item, options: AnnotationOptions, report: ReadReport
) -> SpanRecord:
    record = item.value
    task = f" (task {record['id']})" if "id" in record else ""
    where = Where(path, item.line, f"record {item.position}{task}")
    span_keys = [k for k, v in record.items() if k not in _MIN_META and is_region_list(v)]
    others = {k: v for k, v in record.items() if k not in _MIN_META and k not in span_keys}
    text_key = options.text_field or ("text" if "text" in others else None)
    if text_key is None:
        plain = [k for k, v in others.items() if isinstance(v, str)]
        if len(plain) != 1:
            raise where.error(
                f"no 'text' key, and {len(plain)} string fields ({', '.join(plain) or 'none'}) "
                "could hold the text: name the data field (text_field)"
            )
        text_key = plain[0]
    if text_key not in record:
        raise where.error(f"no {text_key!r} field holding the text")
    spans = [
        RawSpan(v.get("start"), v.get("end"), label, v.get("text"), f"{key} span {n}")
        for key in span_keys
        for n, v in enumerate(record[key], start=1)
        for label in _labels(where, f"{key} span {n}", v.get("labels"))
    ]
    intent_key = options.intent_field
    if intent_key is None:
        candidates = [k for k, v in others.items() if k != text_key and _is_choice(v)]
        if len(candidates) > 1:
            raise where.error(
                f"several fields could be the choice (intent): {', '.join(candidates)}; "
                "name the choices control (intent_field)"
            )
        intent_key = candidates[0] if candidates else None
    intent = None
    if intent_key is not None and intent_key in record:
        choices = _choices(where, intent_key, record[intent_key])
        intent = choices[0] if choices else None
        report.extra_choices += len(choices) > 1
        report.intent_from(f"JSON-MIN key {intent_key!r}")
    return make_record(where, record[text_key], spans, intent, options, report)


def most_recent(annotations: list[dict[str, Any]]) -> int:
    """The index of the annotation updated (else created) last; the last in the list when
    any lacks a readable time (or on a tie)."""
    times = [_time(a.get("updated_at") or a.get("created_at")) for a in annotations]
    known = [t for t in times if t is not None]
    if len(known) < len(times):
        return len(annotations) - 1
    return max(range(len(known)), key=lambda i: (known[i], i))


def task_text(where: Where, data: dict[str, Any], field: str | None) -> str:
    """The text of a task: ``data[field]``, else ``data["text"]``, else its only string."""
    if field is not None or "text" in data:
        key = field or "text"
        if not isinstance(data.get(key), str):
            raise where.error(f"data.{key} must hold the text (a string), got {data.get(key)!r}")
        return str(data[key])
    strings = [k for k, v in data.items() if isinstance(v, str)]
    if len(strings) != 1:
        raise where.error(
            f"data has no 'text' and {len(strings)} string fields "
            f"({', '.join(strings) or 'none'}): name the one holding the text (text_field)"
        )
    return str(data[strings[0]])


def _results(
    where: Where, results: Any, options: AnnotationOptions, report: ReadReport
) -> tuple[list[RawSpan], str | None]:
    if not isinstance(results, list):
        raise where.error("an annotation's 'result' must be a list")
    spans: list[RawSpan] = []
    intent: str | None = None
    for n, result in enumerate(results, start=1):
        kind = result.get("type") if isinstance(result, dict) else None
        value = result.get("value") if isinstance(result, dict) else None
        if kind == "labels" and isinstance(value, dict):
            for label in _labels(where, f"result {n}", value.get("labels")):
                spans.append(
                    RawSpan(
                        value.get("start"),
                        value.get("end"),
                        label,
                        value.get("text"),
                        f"result {n}",
                    )
                )
        elif kind == "choices" and isinstance(value, dict):
            source = result.get("from_name")
            if options.intent_field is not None and source != options.intent_field:
                report.ignore(f"choices {source}")
                continue
            choices = _choices(where, f"result {n}", value)
            report.extra_choices += intent is not None or len(choices) > 1
            if intent is None and choices:
                intent = choices[0]
                report.intent_from(f"choices {source!r}")
        else:
            report.ignore(str(kind))
    return spans, intent


def _labels(where: Where, name: str, labels: Any) -> list[Any]:
    if not isinstance(labels, list) or not labels:
        raise where.error(f"{name}: 'labels' must be a non-empty list, got {labels!r}")
    return labels


def _is_choice(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, dict) and "choices" in value)


def _choices(where: Where, name: str, value: Any) -> list[str]:
    choices = (
        [value]
        if isinstance(value, str)
        else value.get("choices")
        if isinstance(value, dict)
        else None
    )
    if not isinstance(choices, list) or not all(isinstance(c, str) for c in choices):
        raise where.error(f"{name}: expected a choice or a list of choices, got {value!r}")
    return choices


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
