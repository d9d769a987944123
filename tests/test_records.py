"""Records in and out of ``tagserve tag``: text lines, JSON lines and Parquet, files and
folders; every input field kept beside POST /tag's answers; bad records reported and counted;
the local engine end to end (the Ray engine's tests are in tests/test_ray_engine.py)."""

from __future__ import annotations

import base64
import datetime
import json
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tagserve.service.settings import Settings
from tagserve.text.answers import MAX_TEXT_CHARS, Job, RecordError, tag_block
from tagserve.text.arrow import records_table
from tagserve.text.offline import load_predictor
from tagserve.text.records import (
    check_columns,
    find_input,
    find_output,
    input_columns,
    split_jsonl_lines,
    split_text_lines,
)
from tests.records_helpers import (
    SUMMARY,
    many_records,
    read_jsonl,
    run_tag,
    service_results,
    write_jsonl,
)

# ---- reading: lines, formats, columns ----


@pytest.mark.parametrize(
    "data",
    [
        b"one\ntwo\n",
        b"no newline at the end",
        b"windows\r\nline ends\r\n",
        b"old mac\rline ends\r",
        b"\n\n  \nblank lines\n",
        "kept inside a line: \u2028 \u2029 \x0c \x0b \x1c \x85 end\n".encode(),
    ],
)
def test_text_lines_are_split_as_python_files_split_them(data: bytes, tmp_path: Path) -> None:
    # The Ray engine splits whole files; the local engine iterates them: the same lines.
    path = tmp_path / "in.txt"
    path.write_bytes(data)
    with path.open(encoding="utf-8") as file:
        expected = [line.rstrip("\n") for line in file]
    assert split_text_lines(data, "in.txt") == expected


def test_json_lines_split_on_newline_only_and_skip_blank_lines() -> None:
    # orjson writes U+2028 raw inside strings; it must not end a record.
    records = [{"text": "a\u2028b\rc"}, {"text": "d"}]
    data = b"\n".join(orjson.dumps(r) for r in records) + b"\n\n   \r\n"
    assert [orjson.loads(line) for line in split_jsonl_lines(data, "x")] == records


def test_non_utf8_input_names_the_file_and_the_byte() -> None:
    with pytest.raises(
        RecordError, match=r"bad\.txt: not UTF-8 text \(invalid start byte at byte 3\)"
    ):
        split_text_lines(b"abc\xff", "bad.txt")


def test_formats_come_from_extensions_and_folders(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("x\n")
    write_jsonl(tmp_path / "b.JSONL", [{"text": "x"}])
    pq.write_table(pa.table({"text": ["x"]}), tmp_path / "c.parquet")
    parts = tmp_path / "parts"
    parts.mkdir()
    for name in ("part-1.parquet", "part-0.parquet", "_SUCCESS", ".hidden.parquet"):
        pq.write_table(pa.table({"text": ["x"]}), parts / name)
    assert find_input(str(tmp_path / "a.txt")).kind == "lines"
    assert find_input(str(tmp_path / "b.JSONL")).kind == "jsonl"
    assert find_input("-").files == ()
    folder = find_input(str(parts))
    assert (folder.kind, [p.name for p in folder.files]) == (
        "parquet",
        ["part-0.parquet", "part-1.parquet"],
    )
    write_jsonl(parts / "d.jsonl", [{"text": "x"}])
    with pytest.raises(RecordError, match="mixes JSON-lines and Parquet"):
        find_input(str(parts))
    (tmp_path / "empty").mkdir()
    with pytest.raises(RecordError, match=r"without \.jsonl or \.parquet files"):
        find_input(str(tmp_path / "empty"))
    with pytest.raises(RecordError, match=r"cannot open .*absent\.jsonl: No such file"):
        find_input(str(tmp_path / "absent.jsonl"))

    parquet_in, lines_in = find_input(str(tmp_path / "c.parquet")), find_input("-")
    assert find_output(None, parquet_in) == find_output("-", lines_in)
    assert find_output(None, parquet_in).kind == "jsonl"
    assert find_output(str(tmp_path / "o.parquet"), lines_in).kind == "parquet"
    assert find_output(str(tmp_path / "o.txt"), parquet_in).kind == "jsonl"
    new_folder = find_output(str(tmp_path / "new") + "/", parquet_in)
    assert (new_folder.kind, new_folder.folder) == ("parquet", True)
    assert find_output(str(tmp_path / "new.jsonl") + "/", parquet_in).kind == "jsonl"
    assert find_output(str(tmp_path / "new") + "/", lines_in).kind == "jsonl"
    with pytest.raises(RecordError, match="already holds files"):
        find_output(str(parts), parquet_in)


def test_a_missing_text_field_or_a_clash_is_refused_with_the_columns(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "in.jsonl", [{"id": 1, "body": "x"}, {"id": 2, "text": "y"}])
    source = find_input(str(tmp_path / "in.jsonl"))
    job = Job("jsonl", "jsonl")
    with pytest.raises(RecordError) as caught:
        check_columns(input_columns(source, job), source.name, job)
    assert str(caught.value) == (
        f"--text-field 'text': {tmp_path / 'in.jsonl'} has no such field; its fields: id, body"
    )
    pq.write_table(pa.table({"text": ["x"], "entities": [1]}), tmp_path / "t.parquet")
    source = find_input(str(tmp_path / "t.parquet"))
    with pytest.raises(RecordError, match="already has a field 'entities'"):
        check_columns(input_columns(source, job), source.name, job)
    (tmp_path / "junk.jsonl").write_text("\n\nthis is not json\n")
    with pytest.raises(RecordError, match=r"junk\.jsonl: first line: not a JSON object"):
        input_columns(find_input(str(tmp_path / "junk.jsonl")), job)


def test_the_length_limit_is_the_services() -> None:
    assert Settings.model_fields["max_text_chars"].default == MAX_TEXT_CHARS


# ---- tagging a block ----


def test_json_records_keep_every_field_beside_the_services_answers(tiny_artifact: Path) -> None:
    predictor = load_predictor(tiny_artifact, "cpu", batch_size=8)
    records = many_records(40)
    lines = [orjson.dumps(record).decode() for record in records]
    tagged = tag_block(predictor, lines, Job("jsonl", "jsonl", tokens=True))
    outputs = [json.loads(line) for line in tagged.output]
    answers = service_results(tiny_artifact.parent, [r["text"] for r in records])
    for record, answer, output in zip(records, answers, outputs, strict=True):
        # Input fields first, in their order, then POST /tag's result without its text.
        assert output == {**record, **answer}
        assert list(output) == [*record, "tokens", "entities"]
    assert tagged.counts().tokens == sum(len(o["tokens"]) for o in outputs) > 0
    assert tagged.counts().errors == 0


def test_bad_records_get_an_error_of_their_own_and_are_counted(tiny_artifact: Path) -> None:
    predictor = load_predictor(tiny_artifact, "cpu", batch_size=4)
    lines = [
        '{"id": 0, "text": "Harry Potter"}',
        '{"id": 1, "text": null}',
        '{"id": 2, "text": 42}',
        '{"id": 3, "text": true}',
        '{"id": 4, "text": ["a"]}',
        '{"id": 5, "text": "' + "x" * 51 + '"}',
        '{"id": 6, "body": "no text field"}',
        "not json at all",
        "[1, 2]",
        '{"id": 9, "text": "London"}',
    ]
    job = Job("jsonl", "jsonl", max_text_chars=50)
    tagged = tag_block(predictor, lines, job)
    errors = [json.loads(line).get("error") for line in tagged.output]
    assert errors[0] is None and errors[-1] is None
    assert errors[1:7] + errors[8:9] == [
        "text: expected a string, got null",
        "text: expected a string, got a number (42)",
        "text: expected a string, got a boolean (true)",
        "text: expected a string, got a list",
        "text: 51 characters exceed the limit of 50 (TAGSERVE_MAX_TEXT_CHARS)",
        "text: the record has no such field (its fields: id, body)",
        "not a JSON object: got a list",
    ]
    # orjson's own words follow, with the position.
    assert errors[7].startswith("not a JSON object: ") and "line 1 column 1" in errors[7]
    # A record with an error keeps its fields and gets no answer fields.
    assert json.loads(tagged.output[2]) == {"id": 2, "text": 42, "error": errors[2]}
    counts = tagged.counts()
    assert (counts.records, counts.errors) == (10, 8)
    as_table = tag_block(predictor, lines, Job("jsonl", "arrow", max_text_chars=50)).output
    assert isinstance(as_table, pa.Table)
    assert as_table.column("error").to_pylist() == errors
    entities = as_table.column("entities").to_pylist()
    assert [e is None for e in entities] == [e is not None for e in errors]
    # A text that is not a string has no place in a string column: null, said by its error.
    assert as_table.column("text").to_pylist()[1:5] == [None] * 4


def test_parquet_columns_and_types_are_kept(tiny_artifact: Path) -> None:
    predictor = load_predictor(tiny_artifact, "cpu", batch_size=3)
    table = pa.table(
        {
            "id": pa.array([1, 2, 3, 4], pa.int32()),
            "text": ["Harry Potter", "London calling", None, ""],
            "when": pa.array([datetime.datetime(2024, 1, d) for d in (1, 2, 3, 4)]),
            "raw": [b"\x00\x01", b"", b"z", b"\xff"],
            "meta": [{"a": 1}, {"a": None}, None, {"a": 4}],
        }
    )
    tagged = tag_block(predictor, table, Job("arrow", "arrow", tokens=True))
    out = tagged.output
    assert isinstance(out, pa.Table)
    assert out.select(table.column_names).equals(table)
    assert out.column_names == [*table.column_names, "tokens", "entities", "error"]
    assert str(out.schema.field("entities").type) == (
        "list<item: struct<label: string, text: string, start: int64, end: int64, score: double>>"
    )
    assert out.column("error").to_pylist() == [
        None,
        None,
        "text: expected a string, got null",
        None,
    ]
    # The same block to JSON lines: types JSON lacks are written as text.
    lines = tag_block(predictor, table, Job("arrow", "jsonl")).output
    first = json.loads(lines[0])
    assert (first["when"], first["raw"]) == (
        "2024-01-01T00:00:00",
        base64.b64encode(b"\0\1").decode(),
    )
    assert first["meta"] == {"a": 1} and "entities" in first


def test_json_records_of_mixed_types_cannot_become_one_parquet_column() -> None:
    with pytest.raises(RecordError, match="field 'rank' holds values of more than one type"):
        records_table([{"text": "a", "rank": 1}, {"text": "b", "rank": "first"}], "text")
    # Fields missing from some records are null there; all-unreadable blocks keep their rows.
    table = records_table([{"text": "a"}, {"text": "b", "x": 1.5}], "text")
    assert table.column("x").to_pylist() == [None, 1.5]
    assert records_table([{}, {}], "text").num_rows == 2


# ---- the local engine end to end (tagserve tag) ----


@pytest.mark.slow
def test_local_engine_json_lines_and_parquet_files_and_folders(
    tiny_artifact: Path, tmp_path: Path
) -> None:
    records = many_records(333)
    records[7]["text"] = None
    source = tmp_path / "in.jsonl"
    write_jsonl(source, records)
    model = ["--model", str(tiny_artifact), "--batch-size", "5", "--tokens"]
    outputs = {}
    for workers in ("1", "2"):
        target = tmp_path / f"out-{workers}.jsonl"
        done = run_tag(str(source), *model, "--workers", workers, "--output", str(target))
        assert done.returncode == 0, done.stderr
        assert done.stderr == ""  # a pipe: no bar, no summary unless asked
        outputs[workers] = target.read_bytes()
    assert outputs["1"] == outputs["2"]
    tagged = read_jsonl(tmp_path / "out-1.jsonl")
    assert [{k: r[k] for k in records[0]} for r in tagged] == records
    good = [r for i, r in enumerate(records) if i != 7]
    answers = service_results(tiny_artifact.parent, [r["text"] for r in good])
    assert [
        {k: r[k] for k in ("tokens", "entities")} for r in tagged if "error" not in r
    ] == answers

    # JSON lines -> Parquet -> a Parquet folder -> JSON lines again: every field survives.
    done = run_tag(str(source), *model, "--output", str(tmp_path / "out.parquet"), "--summary")
    assert done.returncode == 0, done.stderr
    found = SUMMARY.fullmatch(done.stderr.strip())
    assert found, done.stderr
    tokens = sum(len(r.get("tokens") or []) for r in tagged)
    assert [int(n) for n in found.groups()] == [333, 1, tokens]
    table = pq.read_table(tmp_path / "out.parquet")
    assert table.column("id").to_pylist() == list(range(333))
    assert table.column("meta").to_pylist() == [r["meta"] for r in records]
    assert table.column("entities").to_pylist() == [r.get("entities") for r in tagged]

    plain = tmp_path / "plain.parquet"
    pq.write_table(pa.Table.from_pylist(good), plain, row_group_size=50)
    folder = tmp_path / "parts"
    done = run_tag(str(plain), *model, "--workers", "2", "--output", f"{folder}/")
    assert done.returncode == 0, done.stderr
    assert [p.name for p in folder.iterdir()] == ["part-00000.parquet"]
    back = pq.read_table(folder)
    assert back.select(list(good[0])).to_pylist() == good
    assert back.select(["tokens", "entities"]).to_pylist() == answers
    # Tagged records as input: refused, rather than their answers overwritten.
    again = tmp_path / "again.jsonl"
    done = run_tag(str(folder), *model, "--output", str(again))
    assert done.returncode == 2 and "already has a field 'tokens'" in done.stderr
    done = run_tag(str(plain), *model, "--no-tokens", "--output", str(again))
    assert done.returncode == 0, done.stderr
    assert read_jsonl(again) == [
        {**r, "entities": a["entities"]} for r, a in zip(good, answers, strict=True)
    ]


@pytest.mark.slow
def test_local_engine_bad_options_and_fields_fail_at_once(
    tiny_artifact: Path, tmp_path: Path
) -> None:
    source = tmp_path / "in.jsonl"
    write_jsonl(source, [{"id": 1, "body": "x"}])
    absent_model = ["--model", str(tmp_path / "no-model")]
    missing = f"--text-field 'text': {source} has no such field; its fields: id, body"
    cases = [
        # The field is checked before the model is looked at.
        ([str(source), *absent_model], missing),
        ([str(source), "--text-field", "body", *absent_model], f"model artifact {tmp_path}"),
        ([str(source), "--actors", "2"], "--actors and --address are for --engine ray"),
        ([str(source), "--engine", "ray", "--workers", "2"], "--workers is for --engine local"),
        ([str(source), "--engine", "ray", "--actors", "3,2"], "--actors: expected N or MIN,MAX"),
        ([str(source), "--threads", "0"], "--threads must be at least 1, got 0"),
        ([str(source), "--max-text-chars", "0"], "--max-text-chars must be at least 1"),
    ]
    for args, message in cases:
        done = run_tag(*args)
        assert done.returncode == 2, (args, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"tagserve: error: {message}"), lines
