"""Where ``tagserve tag`` writes tagged blocks: JSON lines to a file, a folder's one part
file or stdout, or Parquet tables to one file (the Ray engine's output folders are written by
Ray's tasks instead, see :mod:`tagserve.text.ray_job`)."""

from __future__ import annotations

import contextlib
import sys
from typing import TYPE_CHECKING, TextIO

from tagserve.text.answers import RecordError
from tagserve.text.records import Target

if TYPE_CHECKING:
    import pyarrow as pa


class Writer(contextlib.AbstractContextManager["Writer"]):
    """Writes tagged blocks to a target: JSON-lines text, or Parquet tables (one file; a
    folder gets one part file), dropping the Ray job's count columns."""

    def __init__(self, target: Target, stdout: TextIO | None = None) -> None:
        self.target = target
        self._parquet: object = None
        self._text: TextIO | None = None
        path = target.path
        if path is not None and target.folder:
            path.mkdir(parents=True, exist_ok=True)
            path = path / f"part-00000.{'parquet' if target.kind == 'parquet' else 'jsonl'}"
        self.path = path
        if target.kind == "jsonl":
            self._text = path.open("w", encoding="utf-8") if path else (stdout or sys.stdout)

    def write(self, output: list[str] | pa.Table) -> None:
        """One tagged block's output, as :func:`~tagserve.text.answers.tag_block` made it."""
        if isinstance(output, list):
            self.write_lines(output)
        else:
            self.write_table(output)

    def write_lines(self, lines: list[str]) -> None:
        assert self._text is not None
        self._text.write("".join(line + "\n" for line in lines))

    def write_table(self, table: pa.Table) -> None:
        import pyarrow.parquet as pq

        table = table.drop_columns([n for n in table.column_names if n.startswith("__tagserve_")])
        if self._parquet is None:
            assert self.path is not None
            self._parquet = pq.ParquetWriter(self.path, table.schema)
        writer: pq.ParquetWriter = self._parquet  # type: ignore[assignment]
        if table.schema != writer.schema:
            try:
                table = table.cast(writer.schema)
            except (ValueError, TypeError) as error:
                raise RecordError(
                    f"--output {self.target.path}: a block's columns differ from the first "
                    f"block's and cannot be cast to them ({error})"
                ) from None
        writer.write_table(table)

    def __exit__(self, *exc: object) -> None:
        if self._parquet is not None:
            self._parquet.close()  # type: ignore[attr-defined]
        if self._text is not None and self.target.path is not None:
            self._text.close()
        elif self._text is not None:
            self._text.flush()
