"""Each export format's own rules, with records written here: which Label Studio annotation
is gold, JSON-MIN's flattened choices, doccano's and Prodigy's variants, format detection,
and the errors and counts a user sees."""

from __future__ import annotations

from pathlib import Path

import pytest

from tagserve.training.annotations import AnnotationOptions, detect_format, read_records
from tagserve.training.readers import DataError, read_dataset, read_dataset_with_report
from tests.annotation_exports import (
    Gold,
    json_min_record,
    label_studio_task,
    spans_record,
    write_json,
    write_jsonl,
)

TEXT = "Ada Lovelace met Babbage in London ."
ADA, LONDON = (0, 12, "PER"), (28, 34, "LOC")


def annotation(spans: list[tuple[int, int, str]], **fields: object) -> dict[str, object]:
    """One Label Studio annotation over TEXT."""
    task = label_studio_task(0, Gold(TEXT, spans))
    return {**task["annotations"][0], **fields}  # type: ignore[index]


def task(task_id: int, *annotations: dict[str, object], **fields: object) -> dict[str, object]:
    return {"id": task_id, "data": {"text": TEXT}, "annotations": list(annotations), **fields}


def test_label_studio_gold_is_the_most_recent_annotation_not_cancelled(tmp_path: Path) -> None:
    tasks = [
        # Newest first in the list, but the times decide.
        task(
            1,
            annotation([LONDON], updated_at="2024-03-02T10:00:00Z"),
            annotation([ADA], updated_at="2024-03-01T10:00:00Z"),
        ),
        # Without times: the last in the list.
        task(
            2,
            annotation([ADA], created_at=None, updated_at=None),
            annotation([LONDON], created_at=None, updated_at=None),
        ),
        # The newest was cancelled: the one before it is gold.
        task(
            3,
            annotation([ADA], updated_at="2024-03-01T10:00:00Z"),
            annotation([LONDON], updated_at="2024-03-05T10:00:00Z", was_cancelled=True),
        ),
        task(4, annotation([ADA], was_cancelled=True)),
        task(5, predictions=[annotation([ADA])]),
        task(6),
        task(7, annotation([])),  # annotated: nothing to label, every token O
    ]
    path = write_json(tmp_path / "ls.json", tasks)
    records, report = read_records(path)
    assert [r.spans for r in records] == [[LONDON], [LONDON], [ADA], []]
    assert [r.source for r in records] == [f"{path}: task {n}" for n in (1, 2, 3, 7)]
    assert (report.skipped_cancelled, report.skipped_unlabeled, report.predictions_only) == (
        1,
        2,
        1,
    )
    assert report.older_annotations == 2 and report.without_spans == 1
    lines = "\n".join(report.lines())
    assert "skipped: 1 cancelled, 2 without annotations" in lines
    assert (
        "1 of the tasks without annotations have predictions only: predictions are not gold"
        in lines
    )


def test_label_studio_text_field_choices_and_other_results(tmp_path: Path) -> None:
    result = annotation([ADA])["result"]
    extra = [
        {"type": "choices", "from_name": "intent", "value": {"choices": ["meet", "travel"]}},
        {"type": "textarea", "from_name": "note", "value": {"text": ["fine"]}},
        {"type": "relation", "from_id": "a", "to_id": "b"},
    ]
    tasks = [
        {
            "id": 9,
            "data": {"sentence": TEXT, "n": 3},
            "annotations": [annotation([], result=[*result, *extra])],
        }
    ]  # type: ignore[list-item]
    path = write_json(tmp_path / "ls.json", tasks)
    [record], report = read_records(path)  # the only string of data is the text
    assert (record.text, record.spans, record.intent) == (TEXT, [ADA], "meet")
    assert report.extra_choices == 1 and report.ignored_results == {"relation": 1, "textarea": 1}
    tasks[0]["data"]["title"] = "x"  # type: ignore[index]
    write_json(path, tasks)
    with pytest.raises(
        DataError, match=r"task 9: data has no 'text' and 2 string fields \(sentence, title\)"
    ):
        read_records(path)
    [record], _ = read_records(path, None, AnnotationOptions(text_field="sentence"))
    assert record.text == TEXT


def test_json_min_flat_records_choices_and_repeated_tasks(tmp_path: Path) -> None:
    older = json_min_record(1, Gold(TEXT, [ADA], "meet"))
    newer = {**json_min_record(1, Gold(TEXT, [LONDON])), "updated_at": "2024-06-01T00:00:00Z"}
    newer["intent"] = {"choices": ["travel", "meet"]}  # several choices: a dict, not a string
    unlabeled = json_min_record(2, Gold("Nothing here .", []), annotation_id=None)
    plain = json_min_record(3, Gold(TEXT, [ADA, LONDON], "meet"))
    path = write_json(tmp_path / "min.json", [newer, older, unlabeled, plain])
    assert detect_format(path) == "label-studio-min"
    records, report = read_records(path)
    assert [(r.spans, r.intent) for r in records] == [([LONDON], "travel"), ([ADA, LONDON], "meet")]
    assert report.older_annotations == 1 and report.skipped_unlabeled == 1
    assert report.extra_choices == 1 and report.intent_fields == ["JSON-MIN key 'intent'"]
    assert records[0].source == f"{path}: record 1 (task 1)"


def test_json_min_with_two_possible_choice_keys_asks_which(tmp_path: Path) -> None:
    record = {**json_min_record(1, Gold(TEXT, [ADA], "meet")), "topic": "history"}
    path = write_json(tmp_path / "min.json", [record])
    with pytest.raises(
        DataError,
        match=r"record 1 \(task 1\): several fields could be the choice \(intent\): intent, topic",
    ):
        read_records(path)
    [found], _ = read_records(path, None, AnnotationOptions(intent_field="topic"))
    assert found.intent == "history"


def test_doccano_variants_and_categories(tmp_path: Path) -> None:
    lines = [
        {"text": TEXT, "label": [[0, 12, "PER"], "meet"]},  # a class name among the spans
        {
            "text": TEXT,
            "entities": [{"id": 4, "start_offset": 28, "end_offset": 34, "label": "LOC"}],
            "relations": [],
            "cats": ["travel"],
        },
        {"text": TEXT, "entities": [[0, 12, "PER"]], "cats": []},
    ]
    path = write_jsonl(tmp_path / "d.jsonl", lines)
    assert detect_format(path) == "doccano"
    records, _ = read_records(path)
    assert [(r.spans, r.intent) for r in records] == [
        ([ADA], "meet"),
        ([LONDON], "travel"),
        ([ADA], None),
    ]
    write_jsonl(path, [{"text": TEXT, "label": [[0, 12]]}])
    with pytest.raises(DataError, match=r"d\.jsonl:1: label 1: expected \[start, end, label\]"):
        read_records(path)


def test_span_jsonl_skips_rejected_and_ignored_answers(tmp_path: Path) -> None:
    gold = Gold(TEXT, [ADA, LONDON])
    lines = [
        spans_record(gold, "reject"),
        spans_record(gold, "ignore"),
        {**spans_record(gold), "cats": {"travel": 0.2, "meet": 0.9}},
        {"text": TEXT, "spans": [], "_input_hash": 1},  # no answer: as accepted
    ]
    path = write_jsonl(tmp_path / "p.jsonl", lines)
    assert detect_format(path) == "spans"
    records, report = read_records(path)
    assert [(r.spans, r.intent, r.source) for r in records] == [
        ([ADA, LONDON], "meet", f"{path}:3"),
        ([], None, f"{path}:4"),
    ]
    assert report.skipped_rejected == 2


def test_detection_and_read_dataset_dispatch(tmp_path: Path) -> None:
    conll = tmp_path / "train.txt"
    conll.write_text("Ada B-PER\nsaid O\n")
    assert detect_format(conll) is None
    assert read_dataset(conll)[0].tags == ["B-PER", "O"]
    ls = write_json(tmp_path / "ls.json", [task(1, annotation([ADA]))])
    assert detect_format(ls) == "label-studio"
    [example] = read_dataset(ls)
    assert example.tags[:2] == ["B-PER", "I-PER"]
    # A name picks the reader whatever the file is called; the report comes along.
    renamed = tmp_path / "export.data"
    renamed.write_text(ls.read_text())
    examples, report = read_dataset_with_report(renamed, "label-studio")
    assert examples == [example] and report is not None and report.records == 1
    assert read_dataset_with_report(conll)[1] is None
    with pytest.raises(ValueError, match="unknown data format 'xml'"):
        read_dataset(ls, "xml")  # type: ignore[arg-type]


def test_files_that_are_not_exports_say_why(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text('[\n {"text": "a",}\n]')
    assert detect_format(broken) is None
    with pytest.raises(DataError, match=r"broken\.json:2: not valid JSON: Expecting property name"):
        read_dataset(broken)
    other = write_jsonl(tmp_path / "other.jsonl", [{"sentence": "a"}])
    with pytest.raises(
        DataError, match=r"other\.jsonl: not an annotation export this reader knows"
    ):
        read_dataset(other)
    bad_line = tmp_path / "bad.jsonl"
    bad_line.write_text('{"text": "a", "spans": []}\n{"text": \n')
    with pytest.raises(DataError, match=r"bad\.jsonl:2: not valid JSON"):
        read_dataset(bad_line)
    cancelled = write_json(tmp_path / "c.json", [task(1, annotation([ADA], was_cancelled=True))])
    with pytest.raises(
        DataError, match=r"c\.json: no annotated records found \(skipped: 1 cancelled\)"
    ):
        read_dataset(cancelled)


def test_a_single_pretty_printed_task_is_read(tmp_path: Path) -> None:
    path = write_json(tmp_path / "one.json", task(1, annotation([ADA])))
    assert detect_format(path) == "label-studio"
    [record], _ = read_records(path)
    assert record.spans == [ADA]


def test_options_are_checked() -> None:
    with pytest.raises(
        ValueError, match="misaligned must be one of expand, contract, error, got 'grow'"
    ):
        AnnotationOptions(misaligned="grow")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="tokenizer must be one of conll, atis"):
        AnnotationOptions(tokenizer="nltk")  # type: ignore[arg-type]
