"""``tagserve tag --engine ray``: read the input with Ray's readers, tag it on an actor pool
(:mod:`tagserve.text.ray_engine`), write it, and count what the summary line says.

Text-lines and JSON-lines files are read whole as bytes and split into lines by
:mod:`tagserve.text.records`' own functions (Ray's ``read_text`` splits on more characters
than Python's text files do, and ``read_json`` parses with pyarrow, which would retype the
columns); Parquet is read by ``read_parquet``. One output file is written by this process
from the streamed batches, in input order; a folder is written by Ray's write tasks, one part
file per task (named by its index, so a retried task rewrites its own file, never a second
one).
"""

from __future__ import annotations

import functools
import sys
import warnings
from collections.abc import Iterable, Iterator
from typing import Any, TextIO, cast

import pyarrow as pa
import pyarrow.parquet as pq
import ray
import ray.data
from ray.data import Datasink
from ray.data.block import BlockAccessor

from tagserve.model.artifact_files import ArtifactError
from tagserve.text.answers import ERROR_COLUMN, TOKENS_COLUMN, Counts, Job, RecordError
from tagserve.text.ray_engine import LINE_COLUMN, RayTagger, map_tagger, ship_model
from tagserve.text.records import Source, Target, split_jsonl_lines, split_text_lines
from tagserve.text.writer import Writer

# Records per part file of an output folder (Ray gathers blocks up to this before a write).
ROWS_PER_PART = 10_000
# Reading and writing files reserve no CPU (num_cpus=0 below): the actors may hold every CPU
# of the cluster (the default pool does), and a read task that waited for one would never run.
# Blocks of about 2,300 CoNLL-sized texts in, 1,000 tagged out: under a second of an actor's
# work, so the end of the input is spread too, and few enough that Ray's cost per block
# stays small next to it.
BLOCK_BYTES = 256 * 1024
# How long a job waits for its pool's minimum of actors (a cluster adding nodes for them may
# take minutes) before it fails.
WAIT_FOR_ACTORS_S = 600


def tag_on_cluster(
    source: Source,
    target: Target,
    job: Job,
    *,
    address: str | None,
    actors: tuple[int, int] | None,
    **options: Any,
) -> Counts:
    """``tagserve tag --engine ray``: join the cluster at ``address`` (``auto``,
    ``ray://host:port``, host:port) or start one on this machine's cores (None), run the job
    with ``actors`` (default: one per ``threads`` CPUs of the cluster), and leave. A failed
    job raises what it comes down to (see :func:`plain_error`)."""
    ray.init(
        address=address,
        include_dashboard=False if address is None else None,
        # Ray forwards what workers print to this process's stdout: not into JSON lines there.
        log_to_driver=target.path is not None,
    )
    try:
        if actors is None:
            cpus = int(ray.cluster_resources().get("CPU", 1))
            actors = (max(1, cpus // options.get("threads", 1)),) * 2
        return run(source, target, job, actors=actors, **options)
    except ray.exceptions.RayError as error:
        raise plain_error(error) from None
    finally:
        ray.shutdown()


def run(
    source: Source,
    target: Target,
    job: Job,
    *,
    model: str,
    batch_size: int,
    actors: int | tuple[int, int],
    threads: int = 1,
    device: str = "cpu",
    preserve_order: bool = True,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    tagger: type[RayTagger] = RayTagger,
    block_bytes: int = BLOCK_BYTES,
) -> Counts:
    """Tag ``source`` into ``target`` on the connected cluster; the records, errors and
    tokens written. Raises ArtifactError, RecordError, or Ray's error for a failed job."""
    if device == "cuda" and not ray.cluster_resources().get("GPU"):
        raise RecordError("--device cuda: the Ray cluster has no GPU")
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = preserve_order
    # Start tagging once the pool's minimum is up, so the first actor up does not take the
    # first blocks before the others can share them. A pool that cannot start fails then.
    context.wait_for_min_actors_s = WAIT_FOR_ACTORS_S
    # An actor takes a block at a time: blocks of Ray's default size (up to 128 MiB, merged
    # from smaller ones) hold so many short texts that a few actors would get them all.
    context.target_max_block_size = block_bytes
    with warnings.catch_warnings():
        # Ray counts a file as one input when planning; the readers cut it into many blocks.
        warnings.filterwarnings("ignore", "The (minimum|maximum) number of concurrent")
        return _run(
            source, target, job, model, batch_size, actors, threads, device, stdin, stdout, tagger
        )


def _run(
    source: Source,
    target: Target,
    job: Job,
    model: str,
    batch_size: int,
    actors: int | tuple[int, int],
    threads: int,
    device: str,
    stdin: TextIO | None,
    stdout: TextIO | None,
    tagger: type[RayTagger],
) -> Counts:
    shipped = ship_model(model)
    readers = actors if isinstance(actors, int) else actors[1]
    ds = read(source, readers, stdin)
    tagged = map_tagger(ds, shipped, job, batch_size, actors, threads, device, True, tagger)
    if target.folder:
        sink = PartFiles(target)
        tagged.write_datasink(sink, ray_remote_args={"num_cpus": 0})
        return sink.counts
    counts = Counts()
    with Writer(target, stdout) as writer:
        for batch in tagged.iter_batches(batch_size=None, batch_format="pyarrow"):
            batch = cast(pa.Table, batch)
            counts.add(_counts(batch))
            if target.kind == "jsonl":
                writer.write_lines(batch.column(LINE_COLUMN).to_pylist())
            else:
                writer.write_table(batch)
    return counts


def read(source: Source, readers: int, stdin: TextIO | None = None) -> ray.data.Dataset:
    """The input as a Dataset: one row per line (column ``line``), or Parquet's rows; at most
    ``readers`` read tasks at once (they reserve no CPU, so nothing else bounds them)."""
    paths = [str(path) for path in source.files]
    pieces: ray.data.Dataset
    if source.kind == "parquet":
        # Row groups listed here and read by tasks that reserve no CPU (read_parquet lists
        # files in a task that needs one, which a pool holding every CPU starves).
        groups = [
            {"path": path, "group": group}
            for path in paths
            for group in range(pq.ParquetFile(path).metadata.num_row_groups)
        ]
        pieces, step = ray.data.from_items(groups), _row_groups
    elif not paths:
        lines = [line.rstrip("\n") for line in stdin or sys.stdin]
        return ray.data.from_arrow(pa.table({LINE_COLUMN: pa.array(lines, pa.string())}))
    else:
        pieces = ray.data.read_binary_files(
            paths, include_paths=True, num_cpus=0, concurrency=readers
        )
        step = functools.partial(_lines, kind=source.kind)
    return pieces.map_batches(
        step,
        batch_size=None,
        batch_format="pyarrow",
        num_cpus=0,
        compute=ray.data.TaskPoolStrategy(size=readers),
    )


def _lines(files: pa.Table, kind: str) -> Iterator[pa.Table]:
    split = split_text_lines if kind == "lines" else split_jsonl_lines
    for data, path in zip(files["bytes"].to_pylist(), files["path"].to_pylist(), strict=True):
        yield pa.table({LINE_COLUMN: pa.array(split(data, path), pa.string())})


def _row_groups(groups: pa.Table) -> Iterator[pa.Table]:
    for path, group in zip(groups["path"].to_pylist(), groups["group"].to_pylist(), strict=True):
        yield pq.ParquetFile(path).read_row_group(group)


def _counts(table: pa.Table) -> Counts:
    tokens = table.column(TOKENS_COLUMN).to_pylist()
    return Counts(len(tokens), sum(table.column(ERROR_COLUMN).to_pylist()), sum(tokens))


class PartFiles(Datasink[Counts]):
    """An output folder: part-NNNNN.jsonl or .parquet per write task, and the job's counts
    (each task returns its own; only a task that finished is counted)."""

    def __init__(self, target: Target) -> None:
        assert target.path is not None
        self.folder = target.path
        self.kind = target.kind
        self.counts = Counts()

    def on_write_start(self, schema: Any = None) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)

    def write(self, blocks: Iterable[Any], ctx: Any) -> Counts:
        tables = [BlockAccessor.for_block(block).to_arrow() for block in blocks]
        tables = [table for table in tables if table.num_rows]
        if not tables:
            return Counts()
        table = pa.concat_tables(tables, promote_options="permissive")
        counts = _counts(table)
        extension = "parquet" if self.kind == "parquet" else "jsonl"
        path = self.folder / f"part-{ctx.task_idx:05d}.{extension}"
        if self.kind == "jsonl":
            path.write_text(
                "".join(line + "\n" for line in table.column(LINE_COLUMN).to_pylist()),
                encoding="utf-8",
            )
        else:
            pq.write_table(table.drop_columns([TOKENS_COLUMN, ERROR_COLUMN]), path)
        return counts

    def on_write_complete(self, write_result: Any) -> None:
        for counts in write_result.write_returns:
            self.counts.add(counts)

    @property
    def min_rows_per_write(self) -> int:
        return ROWS_PER_PART


def plain_error(error: Exception) -> Exception:
    """What a failed Ray job comes down to, for one line on stderr: the RecordError (or
    ArtifactError) a task raised, else a RuntimeError with the first line of Ray's message."""
    cause = getattr(error, "cause", None)
    while cause is not None and getattr(cause, "cause", None) is not None:
        cause = cause.cause
    if isinstance(cause, RecordError | ArtifactError):
        return cause
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return RuntimeError(f"the Ray job failed: {lines[-1] if lines else type(error).__name__}")
