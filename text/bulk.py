"""``tagserve tag --workers N``: the offline loop of :mod:`tagserve.text.offline` on N worker
processes, and the progress bar of ``tagserve tag``.

Lines are read in chunks of whole batches and tagged by a standard-library
:class:`~concurrent.futures.ProcessPoolExecutor` started with ``spawn``, never ``fork``
(torch is not fork-safe once it has run ops). Each worker sets one torch thread and loads
the model once, in its initializer. A chunk is cut into the same batches that
:func:`~tagserve.text.offline.tag_lines` would make and goes through the same
:func:`~tagserve.text.offline.tag_batch`, so every output line is what ``--workers 1``
writes. Chunks are written in input order, and only a few per worker are in flight, so
memory stays flat however long the input is.
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
from itertools import islice
from pathlib import Path
from typing import TextIO

from tagserve.model.artifact import ArtifactError, load, resolve
from tagserve.model.predictor import Predictor
from tagserve.processes import die_with_parent
from tagserve.text.limits import CACHE_WORDS
from tagserve.text.offline import tag_batch

# A chunk is this many batches: big enough that passing it between processes costs little
# next to tagging it, small enough to keep every worker busy up to the end of the input.
BATCHES_PER_CHUNK = 4
# Chunks submitted per worker and not yet written: one running, one queued behind it.
CHUNKS_IN_FLIGHT_PER_WORKER = 2


class LoadFailed(Exception):
    """A worker could not load the model (the message is the :class:`ArtifactError`'s)."""


def tag_lines_parallel(
    source: TextIO,
    sink: TextIO,
    model: str,
    batch_size: int,
    workers: int,
    device: str = "cpu",
    progress: Callable[[int], None] | None = None,
) -> int:
    """:func:`~tagserve.text.offline.tag_lines` on ``workers`` processes: the same output,
    in input order; the same exit codes (0, or 2 with one line when the model cannot load;
    1 when a worker process dies)."""
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    try:
        path = resolve(model)
    except ArtifactError as error:
        print(f"tagserve: error: {error}", file=sys.stderr)
        return 2
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_start_worker,
        initargs=(str(path), device, batch_size),
    )
    lines = (line.rstrip("\n") for line in source)
    chunk_lines = batch_size * BATCHES_PER_CHUNK
    pending: deque[tuple[Future[str], int]] = deque()
    try:
        while True:
            while len(pending) < workers * CHUNKS_IN_FLIGHT_PER_WORKER and (
                chunk := list(islice(lines, chunk_lines))
            ):
                pending.append((pool.submit(_tag_chunk, chunk), len(chunk)))
            if not pending:
                return 0
            future, count = pending.popleft()
            sink.write(future.result())
            if progress is not None:
                progress(count)
    except LoadFailed as error:
        print(f"tagserve: error: {error}", file=sys.stderr)
        return 2
    except BrokenProcessPool:
        print("tagserve: error: a tagging worker process died", file=sys.stderr)
        return 1
    finally:
        # Workers ignore SIGINT: after Ctrl-C they finish the chunk in hand and stop.
        pool.shutdown(wait=True, cancel_futures=True)


@contextlib.contextmanager
def progress_bar(
    path: Path | None, stream: TextIO | None = None
) -> Iterator[Callable[[int], None] | None]:
    """A tqdm bar on ``stream`` (default stderr) counting lines, with lines/s and, for a
    regular file (whose lines are counted first), an ETA; its ``update``, or ``None`` when
    the stream is not a terminal or tqdm (the training extra) is not installed."""
    stream = sys.stderr if stream is None else stream
    if not stream.isatty():
        yield None
        return
    try:
        from tqdm import tqdm
    except ImportError:
        yield None
        return
    total = count_lines(path) if path is not None and path.is_file() else None
    with tqdm(total=total, unit=" lines", file=stream, mininterval=0.5) as bar:
        yield bar.update


def count_lines(path: Path) -> int:
    """Lines in a file, counted as newlines (plus an unterminated last line)."""
    lines, last = 0, b"\n"
    with path.open("rb") as file:
        while block := file.read(1 << 20):
            lines += block.count(b"\n")
            last = block[-1:]
    return lines + (last != b"\n")


# In the worker process.
_predictor: Predictor | None = None
_problem: str | None = None


def _start_worker(path: str, device: str, batch_size: int) -> None:
    """The worker's initializer: one torch thread, then the model."""
    global _predictor, _problem
    # Ctrl-C reaches the whole process group; the parent decides what stops (see above).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent()
    import torch

    torch.set_num_threads(1)
    try:
        bundle = load(Path(path), device)
    except ArtifactError as error:
        _problem = str(error)
        return
    _predictor = Predictor(bundle, batch_size=batch_size, cache_words=CACHE_WORDS)


def _tag_chunk(lines: list[str]) -> str:
    if _predictor is None:
        raise LoadFailed(_problem or "the model did not load")
    size = _predictor.batch_size
    return "".join(
        tag_batch(_predictor, lines[start : start + size]) for start in range(0, len(lines), size)
    )
