"""``tagserve tag --workers N``: the local engine's loop of :mod:`tagserve.text.offline` on N
worker processes, and the progress bar of ``tagserve tag``.

Records are read in chunks of whole batches and tagged by a standard-library
:class:`~concurrent.futures.ProcessPoolExecutor` started with ``spawn``, never ``fork``
(torch is not fork-safe once it has run ops). Each worker sets one torch thread and loads
the model once, in its initializer. A chunk goes through the same
:func:`~tagserve.text.answers.tag_block`, which tags it in the batches that ``--workers 1``
makes, so every output record is what ``--workers 1`` writes. Chunks are written in input
order, and only a few per worker are in flight, so memory stays flat however long the input
is.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import signal
import sys
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from tagserve.model.artifact import ArtifactError, resolve
from tagserve.processes import die_with_parent
from tagserve.text.answers import Counts, Job, Tagged, tag_block
from tagserve.text.offline import load_predictor
from tagserve.text.records import Source, count_records, read_blocks
from tagserve.text.writer import Writer

if TYPE_CHECKING:
    import pyarrow as pa

    from tagserve.model.predictor import Predictor

# A chunk is this many batches: big enough that passing it between processes costs little
# next to tagging it, small enough to keep every worker busy up to the end of the input.
BATCHES_PER_CHUNK = 4
# Chunks submitted per worker and not yet written: one running, one queued behind it.
CHUNKS_IN_FLIGHT_PER_WORKER = 2


class WorkerDied(RuntimeError):
    """A worker process died (``tagserve tag`` exits 1)."""


class LoadFailed(Exception):
    """A worker could not load the model (the message is the :class:`ArtifactError`'s, which
    does not pickle across processes itself)."""


def tag_records_parallel(
    source: Source,
    writer: Writer,
    job: Job,
    model: str,
    batch_size: int,
    workers: int,
    device: str = "cpu",
    progress: Callable[[int], None] | None = None,
    stdin: TextIO | None = None,
) -> Counts:
    """:func:`~tagserve.text.offline.tag_records` on ``workers`` processes: the same output,
    in input order, and the same errors (:class:`LoadFailed` for the model's), plus
    :class:`WorkerDied`."""
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    path = resolve(model)
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_start_worker,
        initargs=(str(path), device, batch_size, job),
    )
    blocks = read_blocks(source, batch_size * BATCHES_PER_CHUNK, stdin)
    pending: deque[Future[Tagged]] = deque()
    counts = Counts()
    try:
        while True:
            while (
                len(pending) < workers * CHUNKS_IN_FLIGHT_PER_WORKER
                and (block := next(blocks, None)) is not None
            ):
                pending.append(pool.submit(_tag_chunk, block))
            if not pending:
                return counts
            tagged = pending.popleft().result()
            writer.write(tagged.output)
            done = tagged.counts()
            counts.add(done)
            if progress is not None:
                progress(done.records)
    except BrokenProcessPool:
        raise WorkerDied("a tagging worker process died") from None
    finally:
        # Workers ignore SIGINT: after Ctrl-C they finish the chunk in hand and stop.
        pool.shutdown(wait=True, cancel_futures=True)


@contextlib.contextmanager
def progress_bar(
    source: Source, stream: TextIO | None = None
) -> Iterator[Callable[[int], None] | None]:
    """A tqdm bar on ``stream`` (default stderr) counting records, with records/s and, for
    files (whose records are counted first), an ETA; its ``update``, or ``None`` when the
    stream is not a terminal or tqdm (the training extra) is not installed."""
    stream = sys.stderr if stream is None else stream
    if not stream.isatty():
        yield None
        return
    try:
        from tqdm import tqdm
    except ImportError:
        yield None
        return
    unit = " lines" if source.kind == "lines" else " records"
    with tqdm(total=count_records(source), unit=unit, file=stream, mininterval=0.5) as bar:
        yield bar.update


# In the worker process.
_predictor: Predictor | None = None
_problem: str | None = None
_job: Job | None = None


def _start_worker(path: str, device: str, batch_size: int, job: Job) -> None:
    """The worker's initializer: one torch thread, then the model."""
    global _predictor, _problem, _job
    # Ctrl-C reaches the whole process group; the parent decides what stops (see above).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent()
    import torch

    torch.set_num_threads(1)
    _job = job
    try:
        _predictor = load_predictor(Path(path), device, batch_size)
    except ArtifactError as error:
        _problem = str(error)


def _tag_chunk(block: list[str] | pa.Table) -> Tagged:
    if _predictor is None or _job is None:
        raise LoadFailed(_problem or "the model did not load")
    return tag_block(_predictor, block, _job)
