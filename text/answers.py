"""One block of records in, the same records with their answers beside them out: the step
that ``tagserve tag`` runs in every engine (this process, ``--workers`` processes, Ray
actors), so the engines differ only in where it runs.

A record's answer is its ``POST /tag`` result (the same :mod:`tagserve.text.pipeline`
functions, the same limits) without the ``text`` the record already holds: ``entities``,
``intent`` for a model with an intent head, ``tokens`` when asked. A record whose text is not a
string or is over the length limit gets an ``error`` instead and never stops the job.

Blocks come as raw lines (a text-lines or JSONL input) or as a pyarrow table (Parquet, a Ray
Dataset) and leave as JSON lines or as a table with typed answer columns. Neither torch nor
pyarrow is imported here until a block needs them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import orjson

from tagserve.text.limits import MAX_SENTENCE_TOKENS
from tagserve.text.pipeline import build_results, model_inputs, plan_text

if TYPE_CHECKING:
    import pyarrow as pa

    from tagserve.model.predictor import Predictor

# POST /tag's default TAGSERVE_MAX_TEXT_CHARS (tests/test_records.py checks they agree).
MAX_TEXT_CHARS = 100_000
# The columns an answer may add; an input that already has one of them is refused up front.
ANSWER_COLUMNS = ("tokens", "entities", "intent", "error")
# Per-record counts a Ray job carries to its writer, which drops them (names no input uses).
TOKENS_COLUMN, ERROR_COLUMN = "__tagserve_tokens", "__tagserve_error"

InputKind = Literal["lines", "jsonl", "arrow"]
OutputKind = Literal["jsonl", "arrow"]


class RecordError(ValueError):
    """The input cannot be read as asked (a missing text field, a column of mixed types):
    ``tagserve tag`` stops with this message and exit status 2."""


@dataclass(frozen=True)
class Job:
    """What one tagging job reads, adds and writes (picklable: it travels to every worker)."""

    input: InputKind
    output: OutputKind
    text_field: str = "text"
    tokens: bool = False
    max_text_chars: int = MAX_TEXT_CHARS


@dataclass
class Counts:
    """The summary line's numbers, summed over blocks."""

    records: int = 0
    errors: int = 0
    tokens: int = 0

    def add(self, other: Counts) -> None:
        self.records += other.records
        self.errors += other.errors
        self.tokens += other.tokens


@dataclass
class Tagged:
    """A tagged block: its output (JSON lines without newlines, or a table) and, per record,
    its token count and whether it got an error."""

    output: list[str] | pa.Table
    tokens: list[int]
    errors: list[bool]

    def counts(self) -> Counts:
        return Counts(len(self.tokens), sum(self.errors), sum(self.tokens))


def tag_block(predictor: Predictor, block: list[str] | pa.Table, job: Job) -> Tagged:
    """Tag one block; the predictor sees ``predictor.batch_size`` records at a time, so the
    same records in the same blocks give the same output in any process."""
    if job.input == "arrow":
        table: Any = block
        texts = table.column(job.text_field).to_pylist()
        records = table.to_pylist() if job.output == "jsonl" else None
    else:
        lines: list[str] = block  # type: ignore[assignment]
        pairs = [_record(line, job) for line in lines]
        records = [record for record, _ in pairs]
        texts = [text for _, text in pairs]
    answers: list[dict[str, Any]] = []
    tokens: list[int] = []
    size = predictor.batch_size
    for start in range(0, len(texts), size):
        batch_answers, batch_tokens = answer_texts(predictor, texts[start : start + size], job)
        answers += batch_answers
        tokens += batch_tokens
    errors = ["error" in answer for answer in answers]
    if job.output == "jsonl":
        assert records is not None
        lines_out = [
            orjson.dumps({**record, **answer}, default=_json_default).decode()
            for record, answer in zip(records, answers, strict=True)
        ]
        return Tagged(lines_out, tokens, errors)
    from tagserve.text.arrow import answer_table, records_table

    if job.input == "arrow":
        base = table
    else:
        assert records is not None
        base = records_table(records, job.text_field)
    return Tagged(answer_table(base, answers, job, _has_intents(predictor)), tokens, errors)


def answer_texts(
    predictor: Predictor, texts: list[object], job: Job
) -> tuple[list[dict[str, Any]], list[int]]:
    """Each text's answer (or ``error``) and token count, the good texts tagged in one call."""
    bundle = predictor.bundle
    tokenizer, scheme = bundle.card.tokenizer, bundle.labels.scheme
    problems = [text_problem(text, job) for text in texts]
    good = [text for text, problem in zip(texts, problems, strict=True) if problem is None]
    plans = [plan_text(text, tokenizer, MAX_SENTENCE_TOKENS) for text in good]  # type: ignore[arg-type]
    tagged = predictor.predict(model_inputs(plans, tokenizer))
    results = iter(build_results(plans, tagged, scheme, intents=bool(bundle.intents)))
    counts = iter([sum(len(sentence) for sentence in plan.sentences) for plan in plans])
    answers, tokens = [], []
    for problem in problems:
        if problem is not None:
            answers.append({"error": problem})
            tokens.append(0)
            continue
        result = next(results)
        del result["text"]
        if not job.tokens:
            del result["tokens"]
        answers.append(result)
        tokens.append(next(counts))
    return answers, tokens


def text_problem(value: object, job: Job) -> str | None:
    """Why ``value`` cannot be tagged (worded as POST /tag's 422 answers), or None."""
    field = job.text_field
    if isinstance(value, _Missing):
        return f"{field}: the record has no such field (its fields: {value.fields})"
    if isinstance(value, _Unreadable):
        return value.reason
    if not isinstance(value, str):
        return f"{field}: expected a string, got {_kind(value)}"
    if len(value) > job.max_text_chars:
        return (
            f"{field}: {len(value)} characters exceed the limit of {job.max_text_chars} "
            "(TAGSERVE_MAX_TEXT_CHARS)"
        )
    return None


def first_record_columns(line: str, job: Job) -> list[str]:
    """The fields of a JSONL input's first record, for the up-front column check (a first
    line that is not a JSON object is refused: the file is likely not JSON lines at all)."""
    record, text = _record(line, job)
    if isinstance(text, _Unreadable):
        raise ValueError(text.reason)
    return list(record)


def _record(line: str, job: Job) -> tuple[dict[str, Any], object]:
    """A line's record and its text (a marker when it has none)."""
    if job.input == "lines":
        return {job.text_field: line}, line
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError as error:
        return {}, _Unreadable(f"not a JSON object: {error}")
    if not isinstance(record, dict):
        return {}, _Unreadable(f"not a JSON object: got {_kind(record)}")
    if job.text_field not in record:
        return record, _Missing(record)
    return record, record[job.text_field]


class _Missing:
    """The text of a record without the text field (it says which fields it has)."""

    def __init__(self, record: dict[str, Any]) -> None:
        self.fields = ", ".join(record) or "none"


class _Unreadable:
    """The text of a JSONL line that is not a JSON object."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int | float):
        return f"a number ({value})"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return f"a {type(value).__name__}"


def _json_default(value: object) -> object:
    """Parquet values JSON has no type for: decimals as strings, bytes as base64."""
    import base64
    import decimal

    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _has_intents(predictor: Predictor) -> bool:
    return bool(predictor.bundle.intents)
