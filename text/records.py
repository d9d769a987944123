"""Where ``tagserve tag`` reads records and what it writes: text lines, JSON lines or Parquet,
a file or a folder of files, chosen by extension (the writing is :mod:`tagserve.text.writer`).
Used by every engine (the Ray engine reads files with Ray's readers but splits lines with the
functions here, so both engines see the same records).

An input file is Parquet for ``.parquet``/``.pq``, JSON lines for ``.jsonl``/``.ndjson``/
``.json``, text lines otherwise (one text per line, as ``tagserve tag`` always read). A folder
holds files of one of the first two kinds, read in name order. An output path ending in ``/``
or naming a folder is a folder; its kind is its extension's, else the input's (JSON lines for
a text-lines input); an output file is Parquet by extension, JSON lines otherwise.
"""

from __future__ import annotations

import contextlib
import io
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TextIO

from tagserve.text.answers import (
    ANSWER_COLUMNS,
    MAX_TEXT_CHARS,
    InputKind,
    Job,
    RecordError,
    first_record_columns,
)

if TYPE_CHECKING:
    import pyarrow as pa

JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
PARQUET_SUFFIXES = (".parquet", ".pq")
Kind = Literal["lines", "jsonl", "parquet"]


@dataclass(frozen=True)
class Source:
    """An input: its kind and files (none for stdin)."""

    kind: Kind
    files: tuple[Path, ...]
    name: str

    @property
    def job_input(self) -> InputKind:
        return "arrow" if self.kind == "parquet" else self.kind


@dataclass(frozen=True)
class Target:
    """An output: JSON lines or Parquet, to a file, a folder, or stdout (``path`` None)."""

    kind: Literal["jsonl", "parquet"]
    path: Path | None
    folder: bool


def find_input(spec: str) -> Source:
    """The input named on the command line (``-``: text lines on stdin)."""
    if spec == "-":
        return Source("lines", (), "stdin")
    path = Path(spec)
    if path.is_dir():
        files = sorted(
            p
            for p in path.iterdir()
            if p.is_file() and not p.name.startswith((".", "_")) and _kind(p) != "lines"
        )
        kinds = {_kind(p) for p in files}
        if not files:
            raise RecordError(f"{path}: a folder without .jsonl or .parquet files")
        if len(kinds) > 1:
            raise RecordError(f"{path}: the folder mixes JSON-lines and Parquet files")
        kind = kinds.pop()
    elif path.is_file():
        files, kind = [path], _kind(path)
    else:
        raise RecordError(f"cannot open {path}: No such file or directory")
    if kind == "parquet":
        _parquet_ready(path)
    return Source(kind, tuple(files), str(path))


def _parquet_ready(path: Path) -> None:
    """Parquet needs pyarrow, which serving's install leaves out: say so, not a traceback."""
    try:
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise RecordError(
            f"{path}: Parquet needs pyarrow, which this install lacks (bash scripts/install.sh "
            "train or ray)"
        ) from None


def find_output(spec: Path | str | None, source: Source) -> Target:
    """The ``--output`` target; a folder must be new or empty, so no old part is mixed in."""
    if spec is None or str(spec) == "-":
        return Target("jsonl", None, False)
    path = Path(spec)
    folder = str(spec).endswith("/") or path.is_dir()
    kind = _kind(path)
    if folder and kind == "lines":
        kind = "parquet" if source.kind == "parquet" else "jsonl"
    if folder and path.is_dir() and any(path.iterdir()):
        raise RecordError(
            f"--output {path}: the folder already holds files; give a new or empty one"
        )
    if kind == "parquet":
        _parquet_ready(path)
        return Target("parquet", path, folder)
    return Target("jsonl", path, folder)


def make_job(
    source: Source,
    target: Target,
    text_field: str = "text",
    tokens: bool | None = None,
    max_text_chars: int | None = None,
) -> Job:
    """The job from ``source`` to ``target``; ``tokens`` defaults to on for a text-lines
    input (whose records are then POST /tag's results, as ``tagserve tag`` always wrote)."""
    return Job(
        input=source.job_input,
        output="arrow" if target.kind == "parquet" else "jsonl",
        text_field=text_field,
        tokens=source.kind == "lines" if tokens is None else tokens,
        max_text_chars=max_text_chars or MAX_TEXT_CHARS,
    )


def input_columns(source: Source, job: Job) -> list[str] | None:
    """The input's columns as far as they can be known before reading it all (the first JSON
    record's fields, Parquet's schema); None for stdin or an empty input."""
    if source.kind == "lines":
        return [job.text_field]
    if source.kind == "parquet":
        import pyarrow.parquet as pq

        return list(pq.read_schema(source.files[0]).names)
    for path in source.files:
        with path.open("rb") as file:
            for raw in file:
                line = jsonl_line(raw, path)
                if line is not None:
                    try:
                        return first_record_columns(line, job)
                    except ValueError as error:
                        raise RecordError(f"{path}: first line: {error}") from None
    return None


def check_columns(
    columns: list[str] | None, name: str, job: Job, option: str = "--text-field"
) -> None:
    """Refuse, before any work, an input (named ``name``) without the text field (chosen by
    ``option``) or with a field an answer would overwrite."""
    if columns is None:
        return
    if job.text_field not in columns:
        raise RecordError(
            f"{option} {job.text_field!r}: {name} has no such field; its fields: "
            + (", ".join(columns) or "none")
        )
    clash = [column for column in ANSWER_COLUMNS if column in columns]
    if clash:
        raise RecordError(
            f"{name} already has a field {clash[0]!r}, which the answers would overwrite; "
            "rename it first"
        )


def read_blocks(
    source: Source, size: int, stdin: TextIO | None = None
) -> Iterator[list[str] | pa.Table]:
    """The input in blocks of at most ``size`` records: lists of lines, or Parquet tables."""
    if source.kind == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        for path in source.files:
            for batch in pq.ParquetFile(path).iter_batches(batch_size=size):
                yield pa.Table.from_batches([batch])
        return
    lines: Iterator[str]
    if source.kind == "lines":
        lines = _text_lines(source, stdin)
    else:
        lines = (line for path in source.files for line in _jsonl_lines(path))
    while chunk := list(islice(lines, size)):
        yield chunk


def count_records(source: Source) -> int | None:
    """Records in the input, cheaply: Parquet's row counts, newlines of line files."""
    if not source.files:
        return None
    if source.kind == "parquet":
        import pyarrow.parquet as pq

        return sum(pq.ParquetFile(path).metadata.num_rows for path in source.files)
    return sum(count_lines(path) for path in source.files)


def count_lines(path: Path) -> int:
    """Lines in a file, counted as newlines (plus an unterminated last line)."""
    lines, last = 0, b"\n"
    with path.open("rb") as file:
        while block := file.read(1 << 20):
            lines += block.count(b"\n")
            last = block[-1:]
    return lines + (last != b"\n")


def split_text_lines(data: bytes, name: str) -> list[str]:
    """A whole text-lines file's lines, split as Python's text files split them (universal
    newlines: ``\\n``, ``\\r\\n`` or ``\\r``), as the local engine reads them."""
    return [line.rstrip("\n") for line in io.StringIO(_decode(data, name), newline=None)]


def split_jsonl_lines(data: bytes, name: str) -> list[str]:
    """A whole JSON-lines file's non-blank lines."""
    lines = (jsonl_line(raw, name) for raw in data.split(b"\n"))
    return [line for line in lines if line is not None]


def jsonl_line(raw: bytes, name: str | Path) -> str | None:
    """One JSON-lines line as text, or None for a blank one (JSON escapes every newline and
    carriage return inside strings, so ``\\n`` alone ends a record)."""
    line = _decode(raw, str(name)).strip()
    return line or None


def _decode(data: bytes, name: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise RecordError(
            f"{name}: not UTF-8 text ({error.reason} at byte {error.start})"
        ) from None


def _text_lines(source: Source, stdin: TextIO | None) -> Iterator[str]:
    with contextlib.ExitStack() as stack:
        file = (
            stack.enter_context(source.files[0].open(encoding="utf-8"))
            if source.files
            else stdin or sys.stdin
        )
        try:
            yield from (line.rstrip("\n") for line in file)
        except UnicodeDecodeError as error:
            raise RecordError(
                f"{source.name}: not UTF-8 text ({error.reason} at byte {error.start})"
            ) from None


def _jsonl_lines(path: Path) -> Iterator[str]:
    with path.open("rb") as file:
        for raw in file:
            line = jsonl_line(raw, path)
            if line is not None:
                yield line


def _kind(path: Path) -> Kind:
    suffix = path.suffix.lower()
    if suffix in PARQUET_SUFFIXES:
        return "parquet"
    return "jsonl" if suffix in JSONL_SUFFIXES else "lines"
