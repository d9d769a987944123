"""Character spans onto the served tokenizer's tokens, with records written here: exact
offsets in emoji, CJK and combining-mark texts, the misalignment and overlap policies,
whitespace at span edges, sentence splitting that never cuts a span, long texts cut."""

from __future__ import annotations

from pathlib import Path

import pytest

from tagserve.training.annotations import AnnotationOptions, read_annotations, read_records
from tagserve.training.readers import DataError, Example
from tests.annotation_exports import (
    Gold,
    doccano_record,
    label_studio_task,
    utf16,
    write_json,
    write_jsonl,
)


def spans_in(text: str, *pieces: tuple[str, str]) -> list[tuple[int, int, str]]:
    """(start, end, label) of each ``(piece, label)``, found in ``text`` left to right."""
    spans, position = [], 0
    for piece, label in pieces:
        start = text.index(piece, position)
        spans.append((start, start + len(piece), label))
        position = start + len(piece)
    return spans


def label_studio(tmp_path: Path, *golds: Gold) -> Path:
    tasks = [label_studio_task(n, g) for n, g in enumerate(golds, start=1)]
    return write_json(tmp_path / "ls.json", tasks)


def read(path: Path, **options: object) -> tuple[list[Example], object]:
    return read_annotations(path, None, AnnotationOptions(**options))  # type: ignore[arg-type]


UNICODE = "José García met 李小龙 in 北京 😀👍🏽 then Ｔｏｋｙｏ and Zoë 𠀀 Ångström."


def test_emoji_cjk_and_combining_marks_keep_exact_offsets(tmp_path: Path) -> None:
    # "José" with a combining acute (e + U+0301), fullwidth Latin, an astral CJK character.
    text = UNICODE.replace("José", "Jose\u0301")
    spans = spans_in(
        text,
        ("Jose\u0301 García", "PER"),
        ("李小龙", "PER"),
        ("北京", "LOC"),
        ("Ｔｏｋｙｏ", "LOC"),
        ("Zoë 𠀀 Ångström", "PER"),
    )
    path = label_studio(tmp_path, Gold(text, spans))  # value.text checked against the text
    [record], _ = read_records(path)
    assert record.spans == spans
    start, end, _ = record.spans[0]
    assert record.text[start:end] == "Jose\u0301 García"
    [example], report = read(path)
    assert example.tokens == [
        "Jose\u0301", "García", "met", "李小龙", "in", "北京", "😀", "👍", "🏽", "then",
        "Ｔｏｋｙｏ", "and", "Zoë", "𠀀", "Ångström", ".",
    ]  # fmt: skip
    assert example.tags == [
        "B-PER", "I-PER", "O", "B-PER", "O", "B-LOC", "O", "O", "O", "O",
        "B-LOC", "O", "B-PER", "I-PER", "I-PER", "O",
    ]  # fmt: skip
    assert report.expanded == report.contracted == 0  # type: ignore[attr-defined]


def test_utf16_offsets_convert_to_code_points(tmp_path: Path) -> None:
    text = UNICODE
    spans = spans_in(text, ("北京", "LOC"), ("Ｔｏｋｙｏ", "LOC"), ("Ångström", "PER"))
    gold = Gold(text, spans)
    units = write_jsonl(tmp_path / "u.jsonl", [doccano_record(1, gold, "utf16")])
    points = write_jsonl(tmp_path / "c.jsonl", [doccano_record(1, gold)])
    # 😀, 👍 and 🏽 are two UTF-16 units each, and so is 𠀀 before "Ångström".
    assert [utf16(text, s) - s for s, _, _ in spans] == [0, 3, 4]
    assert read_records(units, None, AnnotationOptions(offsets="utf16"))[0][0].spans == spans
    assert read_records(points)[0][0].spans == spans
    # UTF-16 offsets read as code points point past the end of the text: refused.
    with pytest.raises(DataError, match=r"u\.jsonl:1: label 3 \(PER\): offsets 55-63 do not"):
        read_records(units)


def test_an_offset_inside_a_utf16_pair_is_refused(tmp_path: Path) -> None:
    text = "ok 😀 Paris"
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": text, "label": [[4, 10, "LOC"]]}])
    with pytest.raises(DataError, match=r"d\.jsonl:1: start offset 4 falls inside a character"):
        read_records(path, "doccano", AnnotationOptions(offsets="utf16"))


def test_a_recorded_text_that_differs_names_both_strings_and_the_unit_mix_up(
    tmp_path: Path,
) -> None:
    text = "Fans 😀 cheered Lionel Messi today"
    start = utf16(text, text.index("Lionel"))  # UTF-16 units written where code points belong
    task = label_studio_task(7, Gold(text, []))
    task["annotations"][0]["result"] = [  # type: ignore[index]
        {
            "type": "labels",
            "from_name": "label",
            "to_name": "text",
            "value": {"start": start, "end": start + 12, "text": "Lionel Messi", "labels": ["PER"]},
        }
    ]
    path = write_json(tmp_path / "ls.json", [task])
    with pytest.raises(DataError) as caught:
        read_records(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: task 7: result 1 (PER) at 16-28: ")
    assert "'Lionel Messi'" in message and "'ionel Messi '" in message
    assert "offsets count UTF-16 code units: read with offsets utf16" in message
    # Read as what they are, the same offsets are right.
    [record], _ = read_records(path, None, AnnotationOptions(offsets="utf16"))
    assert record.spans == spans_in(text, ("Lionel Messi", "PER"))


@pytest.fixture
def misaligned(tmp_path: Path) -> Path:
    # "New", "York" and "imes sued" cut into tokens ("New-York", "Times"); "他在北京工作" is
    # one token, on a paragraph of its own.
    text = "The New-York Times sued .\n\n他在北京工作"
    spans = spans_in(text, ("New", "MISC"), ("York", "LOC"), ("imes sued", "ORG"), ("北京", "LOC"))
    return write_jsonl(tmp_path / "m.jsonl", [{"text": text, "label": [list(s) for s in spans]}])


def test_expand_grows_spans_to_the_tokens_they_touch(misaligned: Path) -> None:
    examples, report = read(misaligned, overlaps="longest")
    assert [e.tags for e in examples] == [["O", "B-MISC", "B-ORG", "I-ORG", "O"], ["B-LOC"]]
    assert report.expanded == 4  # type: ignore[attr-defined]
    # Expanded, "New" and "York" both hold "New-York": the first kept (a tie), counted.
    assert report.overlaps_dropped == 1  # type: ignore[attr-defined]
    assert report.labels == {"LOC": 1, "MISC": 1, "ORG": 1}  # type: ignore[attr-defined]
    shown = f"{misaligned}:1: span 'York' (LOC, 8-12) in tokens ['The', 'New-York', 'Times']"
    assert f"{shown}: expanded" in report.examples  # type: ignore[attr-defined]


def test_overlaps_made_by_expanding_are_an_error_by_default(misaligned: Path) -> None:
    with pytest.raises(
        DataError,
        match=r"m\.jsonl:1: spans 'New' \(MISC, 4-7\) and 'York' \(LOC, 8-12\) overlap once on",
    ):
        read(misaligned)


def test_contract_shrinks_spans_and_counts_the_ones_left_empty(misaligned: Path) -> None:
    examples, report = read(misaligned, misaligned="contract")
    assert [e.tags for e in examples] == [["O", "O", "O", "B-ORG", "O"], ["O"]]
    assert report.contracted == 1 and report.contracted_dropped == 3  # type: ignore[attr-defined]
    assert report.spans == 1 and report.labels == {"ORG": 1}  # type: ignore[attr-defined]
    dropped = "'北京' (LOC, 29-31) in tokens ['.', '他在北京工作']: no whole token inside"
    assert any(dropped in e for e in report.examples)  # type: ignore[attr-defined]


def test_error_names_the_record_the_span_and_the_tokens_around_it(misaligned: Path) -> None:
    with pytest.raises(DataError) as caught:
        read(misaligned, misaligned="error")
    assert str(caught.value).startswith(
        f"{misaligned}:1: span 'New' (MISC, 4-7) does not fall on token boundaries (conll "
        "tokenizer): tokens ['The', 'New-York', 'Times']"
    )


def test_whitespace_at_span_edges_is_trimmed_not_misaligned(tmp_path: Path) -> None:
    text = "We met  Ada Lovelace \nin London ."
    spans = [
        (6, 22, "PER"),
        (24, 32, "LOC"),
        (2, 3, "MISC"),
    ]  # "  Ada Lovelace \n", " London ", " "
    path = write_jsonl(tmp_path / "w.jsonl", [{"text": text, "label": [list(s) for s in spans]}])
    [record], report = read_records(path)
    assert [record.text[s:e] for s, e, _ in record.spans] == ["Ada Lovelace", "London"]
    assert report.trimmed == 2 and report.empty_dropped == 1
    examples, _ = read(path, misaligned="error")  # the line break ends a sentence
    assert [e.tags for e in examples] == [["O", "O", "B-PER", "I-PER"], ["O", "B-LOC", "O"]]


def test_nested_spans_are_an_error_naming_both_or_the_longest_is_kept(tmp_path: Path) -> None:
    text = "Shares of Bank of America fell ."
    spans = [*spans_in(text, ("America", "LOC")), *spans_in(text, ("Bank of America", "ORG"))]
    path = write_jsonl(
        tmp_path / "n.jsonl",
        [{"text": text, "spans": [{"start": s, "end": e, "label": t} for s, e, t in spans]}],
    )
    with pytest.raises(
        DataError,
        match=r"n\.jsonl:1: spans 'Bank of America' \(ORG, 10-25\) and 'America' \(LOC, 18-25\) "
        "overlap;",
    ):
        read_records(path)
    [example], report = read(path, overlaps="longest")
    assert example.tags == ["O", "O", "B-ORG", "I-ORG", "I-ORG", "O", "O"]
    assert report.overlaps_dropped == 1 and report.labels == {"ORG": 1}  # type: ignore[attr-defined]


def test_two_labels_on_one_span_overlap_and_a_repeat_is_merged(tmp_path: Path) -> None:
    text = "Jordan played ."
    value = {"start": 0, "end": 6, "text": "Jordan"}
    task = label_studio_task(3, Gold(text, []))
    task["annotations"][0]["result"] = [  # type: ignore[index]
        {"type": "labels", "value": {**value, "labels": ["PER", "LOC"]}},
        {"type": "labels", "value": {**value, "labels": ["PER"]}},
    ]
    path = write_json(tmp_path / "ls.json", [task])
    with pytest.raises(
        DataError, match=r"task 3: spans 'Jordan' \(PER, 0-6\) and 'Jordan' \(LOC, 0-6\) overlap"
    ):
        read_records(path)
    [record], report = read_records(path, None, AnnotationOptions(overlaps="longest"))
    assert record.spans == [(0, 6, "PER")]  # a tie: the first in the file
    assert report.duplicates == 1 and report.overlaps_dropped == 1


def test_a_record_is_split_into_the_services_sentences_but_never_inside_a_span(
    tmp_path: Path,
) -> None:
    text = "Yahoo! Inc. is big. Paris is nice."
    gold = Gold(text, spans_in(text, ("Yahoo! Inc.", "ORG"), ("Paris", "LOC")), "news")
    path = label_studio(tmp_path, gold)
    examples, report = read(path)
    # The splitter would break after "Yahoo !": the span crosses it, so no break there.
    assert examples == [
        Example(
            ["Yahoo", "!", "Inc.", "is", "big", "."],
            ["B-ORG", "I-ORG", "I-ORG", "O", "O", "O"],
            "news",
        ),
        Example(["Paris", "is", "nice", "."], ["B-LOC", "O", "O", "O"], "news"),
    ]
    assert report.joined_sentences == 1 and report.sentences == 2  # type: ignore[attr-defined]
    [whole], _ = read(path, split_sentences=False)
    assert whole.tokens == [t for e in examples for t in e.tokens]


def test_long_texts_are_cut_before_a_span_the_cut_would_fall_in(tmp_path: Path) -> None:
    text = "a b c New York City d e f g"
    spans = spans_in(text, ("New York City", "LOC"))
    path = write_jsonl(tmp_path / "l.jsonl", [{"text": text, "label": [list(s) for s in spans]}])
    examples, report = read(path, max_sentence_tokens=5)
    assert [e.tokens for e in examples] == [
        ["a", "b", "c"],
        ["New", "York", "City", "d", "e"],
        ["f", "g"],
    ]
    assert examples[1].tags[:3] == ["B-LOC", "I-LOC", "I-LOC"]
    assert report.cut_sentences == 2  # type: ignore[attr-defined]
    # A span longer than a whole piece is cut, and its second part starts with B-.
    examples, _ = read(path, max_sentence_tokens=2)
    assert [e.tags for e in examples][1:4] == [["O"], ["B-LOC", "I-LOC"], ["B-LOC", "O"]]


def test_a_label_with_whitespace_is_refused_with_a_fix(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "s.jsonl", [{"text": "in New York", "label": [[3, 11, "big city"]]}]
    )
    with pytest.raises(
        DataError, match=r"s\.jsonl:1: label 1: label 'big city' contains whitespace; .*'big_city'"
    ):
        read_records(path)


def test_offsets_outside_the_text_name_the_line(tmp_path: Path) -> None:
    lines = [{"text": "fine", "label": []}, {"text": "short", "label": [[2, 9, "X"]]}]
    path = write_jsonl(tmp_path / "o.jsonl", lines)
    with pytest.raises(DataError, match=r"o\.jsonl:2: label 1 \(X\): offsets 2-9 do not delimit"):
        read_records(path)


def test_the_atis_style_keeps_contractions_whole(tmp_path: Path) -> None:
    text = "i'd like a flight to boston"
    gold = Gold(text, spans_in(text, ("boston", "toloc.city_name")), "atis_flight")
    path = label_studio(tmp_path, gold)
    [example], _ = read(path, tokenizer="atis")
    assert example.tokens[0] == "i'd" and example.tags[-1] == "B-toloc.city_name"
    [example], _ = read(path)
    assert example.tokens[:2] == ["i", "'d"]
