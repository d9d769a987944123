"""Answers as typed Arrow columns beside a block's own columns (Parquet output, Ray Datasets).

The answer columns have one fixed type each, whatever a block holds (a block without any
entity still has ``list<struct<label, text, start, end, score>>``), so the blocks of one job
share a schema and can be written to one Parquet file or folder.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from tagserve.text.answers import Job, RecordError

_SPAN = [("text", pa.string()), ("start", pa.int64()), ("end", pa.int64())]
ENTITY = pa.struct([("label", pa.string()), *_SPAN, ("score", pa.float64())])
TOKEN = pa.struct([*_SPAN, ("tag", pa.string()), ("score", pa.float64())])
INTENT = pa.struct([("label", pa.string()), ("score", pa.float64())])


def answer_fields(job: Job, intents: bool) -> list[pa.Field]:
    """The columns an answer adds, in the order POST /tag's results hold them."""
    fields = [pa.field("tokens", pa.list_(TOKEN))] if job.tokens else []
    fields.append(pa.field("entities", pa.list_(ENTITY)))
    if intents:
        fields.append(pa.field("intent", INTENT))
    fields.append(pa.field("error", pa.string()))
    return fields


def answer_table(
    base: pa.Table, answers: list[dict[str, Any]], job: Job, intents: bool
) -> pa.Table:
    """``base`` (one row per answer) with the answer columns appended; a record with an
    error has nulls in the others, a good one a null ``error``."""
    fields = answer_fields(job, intents)
    arrays = [pa.array([a.get(f.name) for a in answers], type=f.type) for f in fields]
    schema = pa.schema([*base.schema, *fields])
    return pa.Table.from_arrays([*base.columns, *arrays], schema=schema)


def records_table(records: list[dict[str, Any]], text_field: str) -> pa.Table:
    """JSON records as a table: every field any record has becomes a column (null where a
    record lacks it); a text that is not a string is stored as null (its error says what it
    was). A field whose values have no one Arrow type cannot go to Parquet: RecordError."""
    names = list(dict.fromkeys(name for record in records for name in record))
    arrays = []
    for name in names:
        values = [record.get(name) for record in records]
        try:
            if name == text_field:
                arrays.append(
                    pa.array([v if isinstance(v, str) else None for v in values], pa.string())
                )
            else:
                arrays.append(pa.array(values))
        except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
            raise RecordError(
                f"field {name!r} holds values of more than one type, which one Parquet column "
                f"cannot store ({error}); write JSON lines instead"
            ) from None
    if not arrays:
        # Every line was unreadable: a table of the right length with no columns yet.
        return pa.table({"__rows": pa.nulls(len(records))}).drop_columns(["__rows"])
    return pa.Table.from_arrays(arrays, names=names)
