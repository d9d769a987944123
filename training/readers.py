"""Readers for CoNLL column files and ``seq.in``/``seq.out`` folders (errors name the line),
and the entry point that also reads annotation-tool exports (tagserve.training.annotations)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, cast

from tagserve.model.schemes import Scheme, first_violation, split_tag

if TYPE_CHECKING:  # tagserve.training.annotations imports this module
    from tagserve.training.annotations import AnnotationFormat, AnnotationOptions, ReadReport

DataFormat = Literal["conll", "bio", "auto", "label-studio", "label-studio-min", "doccano", "spans"]
# Files "auto" reads as annotation-tool exports, telling their format by content.
_ANNOTATION_SUFFIXES = frozenset({".json", ".jsonl"})


@dataclass(frozen=True)
class Example:
    """One gold sentence, and its intent where the data has one (``label`` files)."""

    tokens: list[str]
    tags: list[str]
    intent: str | None = None


class DataError(Exception):
    """Malformed training or evaluation data: names the file, the line and the problem."""

    def __init__(self, path: Path, line: int | None, problem: str) -> None:
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {problem}")
        self.path, self.line, self.problem = path, line, problem


def read_dataset(
    path: Path,
    data_format: DataFormat = "auto",
    strict: bool = False,
    scheme: Scheme = "BIO",
    annotations: AnnotationOptions | None = None,
) -> list[Example]:
    """Read a CoNLL file, a ``seq.in``/``seq.out`` folder or an annotation-tool export
    (``auto`` picks: a folder is ``bio``, ``.json``/``.jsonl`` an export of the format its
    content shows, anything else ``conll``); ``annotations`` says how to read an export."""
    return read_dataset_with_report(path, data_format, strict, scheme, annotations)[0]


def read_dataset_with_report(
    path: Path,
    data_format: DataFormat = "auto",
    strict: bool = False,
    scheme: Scheme = "BIO",
    annotations: AnnotationOptions | None = None,
) -> tuple[list[Example], ReadReport | None]:
    """:func:`read_dataset`, and for an annotation export what reading it did (None for
    CoNLL and seq folders, which are read as they are)."""
    path = Path(path)
    if data_format == "auto" and path.is_dir():
        data_format = "bio"
    elif data_format == "auto" and path.suffix.lower() not in _ANNOTATION_SUFFIXES:
        data_format = "conll"
    if data_format == "bio":
        return read_seq_folder(path, strict, scheme), None
    if data_format == "conll":
        return read_conll(path, strict, scheme), None
    from tagserve.training.annotations import (
        ANNOTATION_FORMATS,
        AnnotationOptions,
        read_annotations,
    )

    if data_format != "auto" and data_format not in ANNOTATION_FORMATS:
        known = ", ".join(["conll", "bio", "auto", *ANNOTATION_FORMATS])
        raise ValueError(f"unknown data format {data_format!r}: expected one of {known}")
    # Spans become tags (always well-formed BIO, so ``strict`` holds); "auto" here is a
    # .json/.jsonl file, whose format its content tells.
    fmt = None if data_format == "auto" else cast("AnnotationFormat", data_format)
    return read_annotations(path, fmt, annotations or AnnotationOptions())


def read_conll(path: Path, strict: bool = False, scheme: Scheme = "BIO") -> list[Example]:
    """CoNLL columns: token first, tag last, blank line between sentences, -DOCSTART- skipped."""
    path = Path(path)
    lines = _read_lines(path)
    examples: list[Example] = []
    tokens: list[str] = []
    tags: list[str] = []
    first_line = 0
    columns: int | None = None

    def finish() -> None:
        if tokens:
            _check_tags(path, first_line, tags, strict, scheme)
            examples.append(Example(list(tokens), list(tags)))
            tokens.clear()
            tags.clear()

    for number, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields:
            finish()
            continue
        if fields[0] == "-DOCSTART-":
            finish()
            continue
        if len(fields) < 2:
            raise DataError(
                path, number, f"expected at least 2 columns (token ... tag), got {len(fields)}"
            )
        if columns is None:
            columns = len(fields)
        elif len(fields) != columns:
            raise DataError(
                path, number, f"expected {columns} columns like the lines before, got {len(fields)}"
            )
        _check_tag(path, number, fields[-1])
        if not tokens:
            first_line = number
        tokens.append(fields[0])
        tags.append(fields[-1])
    finish()
    if not examples:
        raise DataError(path, None, "no sentences found")
    return examples


def read_seq_folder(path: Path, strict: bool = False, scheme: Scheme = "BIO") -> list[Example]:
    """A folder with ``seq.in`` (tokens) and ``seq.out`` (tags), one sentence per line, and
    optionally ``label`` (one intent per line; a multi-intent label such as
    ``atis_airfare#atis_flight`` is kept whole, one class of its own, as the ATIS
    literature scores it: by exact match)."""
    path = Path(path)
    inputs = _read_lines(path / "seq.in")
    outputs = _read_lines(path / "seq.out")
    if len(inputs) != len(outputs):
        raise DataError(
            path / "seq.out", None, f"has {len(outputs)} lines but seq.in has {len(inputs)}"
        )
    intents: list[str | None] = [None] * len(inputs)
    if (path / "label").exists():
        labels = _read_lines(path / "label")
        if len(labels) != len(inputs):
            raise DataError(
                path / "label",
                min(len(labels), len(inputs)) + 1,
                f"has {len(labels)} lines but seq.in has {len(inputs)}: one intent per sentence",
            )
        for number, label in enumerate(labels, start=1):
            if len(label.split()) != 1 and inputs[number - 1].strip():
                raise DataError(path / "label", number, f"expected one intent label, got {label!r}")
        intents = [label.strip() or None for label in labels]
    examples = []
    for number, (line_in, line_out) in enumerate(zip(inputs, outputs, strict=True), start=1):
        tokens, tags = line_in.split(), line_out.split()
        if not tokens and not tags:
            continue
        if len(tokens) != len(tags):
            raise DataError(
                path / "seq.out",
                number,
                f"has {len(tags)} tags but seq.in line {number} has {len(tokens)} tokens",
            )
        for tag in tags:
            _check_tag(path / "seq.out", number, tag)
        _check_tags(path / "seq.out", number, tags, strict, scheme)
        examples.append(Example(tokens, tags, intents[number - 1]))
    if not examples:
        raise DataError(path, None, "no sentences found")
    return examples


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DataError(path, None, "file not found") from None
    except UnicodeDecodeError as error:
        raise DataError(
            path, None, f"not UTF-8 text ({error.reason} at byte {error.start})"
        ) from None


def _check_tag(path: Path, line: int, tag: str) -> None:
    try:
        split_tag(tag)
    except ValueError as error:
        raise DataError(path, line, str(error)) from None


def _check_tags(path: Path, first_line: int, tags: list[str], strict: bool, scheme: Scheme) -> None:
    if not strict:
        return
    violation = first_violation(tags, scheme)
    if violation is not None:
        index, reason = violation
        # In a CoNLL file token i of a sentence sits on line first_line + i.
        line = (
            first_line + index if path.suffix != ".out" and path.name != "seq.out" else first_line
        )
        raise DataError(path, line, f"{reason} (strict mode)")
