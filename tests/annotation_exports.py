"""Write annotation-tool exports (Label Studio JSON and JSON-MIN, doccano JSONL, span JSONL)
from gold texts and character spans, as the tools write them: the tests' inputs, built at
test time (from ../shared/data or from records written in a test), never committed."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tagserve.model.schemes import spans_from_tags


@dataclass
class Gold:
    """One text with its spans (code points, end exclusive) and intent."""

    text: str
    spans: list[tuple[int, int, str]]
    intent: str | None = None


def from_tokens(tokens: list[str], tags: list[str], intent: str | None = None) -> Gold:
    """The tokens joined by single spaces; a span per BIO entity, over its tokens' text."""
    offsets = []
    position = 0
    for token in tokens:
        offsets.append((position, position + len(token)))
        position += len(token) + 1
    spans = [
        (offsets[s.start][0], offsets[s.end - 1][1], s.label) for s in spans_from_tags(tags, "BIO")
    ]
    return Gold(" ".join(tokens), spans, intent)


def utf16(text: str, offset: int) -> int:
    """A code-point offset as UTF-16 code units (what doccano writes)."""
    return len(text[:offset].encode("utf-16-le")) // 2


def label_studio_task(
    task_id: int, gold: Gold, created: str = "2024-05-01T10:00:00.000000Z"
) -> dict[str, object]:
    """A task as Label Studio's JSON export writes it, with one annotation."""
    result: list[dict[str, object]] = [
        {
            "id": f"r{task_id}-{n}",
            "from_name": "label",
            "to_name": "text",
            "type": "labels",
            "origin": "manual",
            "value": {"start": s, "end": e, "text": gold.text[s:e], "labels": [label]},
        }
        for n, (s, e, label) in enumerate(gold.spans)
    ]
    if gold.intent is not None:
        result.append(
            {
                "id": f"c{task_id}",
                "from_name": "intent",
                "to_name": "text",
                "type": "choices",
                "value": {"choices": [gold.intent]},
            }
        )
    annotation = {
        "id": task_id * 10,
        "completed_by": 1,
        "result": result,
        "was_cancelled": False,
        "ground_truth": False,
        "created_at": created,
        "updated_at": created,
        "lead_time": 3.2,
    }
    return {
        "id": task_id,
        "data": {"text": gold.text},
        "annotations": [annotation],
        "predictions": [],
    }


def json_min_record(task_id: int, gold: Gold, annotation_id: int | None = 1) -> dict[str, object]:
    """A record as Label Studio's JSON-MIN export writes it (converter's prettify_result)."""
    record: dict[str, object] = {"text": gold.text, "id": task_id}
    if gold.spans:
        record["label"] = [
            {"start": s, "end": e, "text": gold.text[s:e], "labels": [label]}
            for s, e, label in gold.spans
        ]
    if gold.intent is not None:
        record["intent"] = gold.intent  # one choice: a plain string
    record.update(
        annotator=1,
        annotation_id=annotation_id,
        created_at="2024-05-01T10:00:00.000000Z",
        updated_at="2024-05-01T10:00:00.000000Z",
        lead_time=3.2,
    )
    return record


def doccano_record(record_id: int, gold: Gold, units: str = "codepoints") -> dict[str, object]:
    """A line of doccano's JSONL export; ``units="utf16"`` writes offsets as doccano counts."""
    convert = (lambda o: utf16(gold.text, o)) if units == "utf16" else (lambda o: o)
    record: dict[str, object] = {
        "id": record_id,
        "text": gold.text,
        "label": [[convert(s), convert(e), label] for s, e, label in gold.spans],
        "Comments": [],
    }
    if gold.intent is not None:
        record["cats"] = [gold.intent]
    return record


def spans_record(gold: Gold, answer: str = "accept") -> dict[str, object]:
    """A Prodigy ``db-out`` line (``token_start``/``token_end`` of space-split tokens)."""
    starts = [
        i for i, c in enumerate(gold.text) if c != " " and (i == 0 or gold.text[i - 1] == " ")
    ]
    spans = []
    for s, e, label in gold.spans:
        first = sum(1 for x in starts if x < s)
        last = sum(1 for x in starts if x < e) - 1
        spans.append(
            {"start": s, "end": e, "label": label, "token_start": first, "token_end": last}
        )
    record: dict[str, object] = {"text": gold.text, "spans": spans, "answer": answer}
    if gold.intent is not None:
        record["cats"] = {gold.intent: 1.0}
    return record


def write_json(path: Path, value: object) -> Path:
    path.write_text(json.dumps(value, ensure_ascii=False, indent=1), encoding="utf-8")
    return path


def write_jsonl(path: Path, records: list[dict[str, object]]) -> Path:
    lines = [json.dumps(r, ensure_ascii=False) for r in records]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
