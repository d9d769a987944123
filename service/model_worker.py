"""Each model in a worker process of its own, on the standard library's process pool.

Why a process: in one process the event loop and the model take turns on the GIL, and under
HTTP load a batch took three times as long as on a quiet process. A worker has a GIL of its
own.

How: a one-process :class:`~concurrent.futures.ProcessPoolExecutor` started with ``spawn``,
never ``fork``: the server has already run torch ops while loading, and GNU OpenMP is not
fork-safe, so a forked child could block forever in its first parallel op. The worker loads
the artifact itself and sets its torch thread count before any torch op. Every batch has a
timeout; a worker that dies or overruns it is killed and replaced in the background, its
batch fails with :class:`WorkerUnavailable` (answered 503 with ``Retry-After``), and the next
batch waits for the new worker. Sentences and answers cross the process boundary as plain
lists of strings and floats.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from tagserve.model.predictor import Predictor, TaggedSentence
from tagserve.text.processes import die_with_parent

log = logging.getLogger(__name__)
# Test hook: a worker whose batch holds this token sleeps past any timeout (a hung model).
HANG_TOKEN_VARIABLE = "TAGSERVE_TEST_HANG_TOKEN"


class WorkerUnavailable(Exception):
    """The model's worker died or overran the batch timeout; it is being replaced."""

    def __init__(self, model: str, problem: str, retry_after: int = 2) -> None:
        super().__init__(f"model {model!r} is unavailable: its worker {problem}; retry shortly")
        self.model = model
        self.retry_after = retry_after


class WorkerStartError(Exception):
    """A model's worker could not load its model at start-up."""


class ModelWorker:
    """A :class:`~tagserve.model.predictor.SentenceTagger` whose work happens in a worker
    process that is replaced whenever it dies or hangs."""

    def __init__(
        self,
        name: str,
        path: Path,
        *,
        torch_threads: int,
        batch_size: int,
        cache_words: int,
        batch_timeout_s: float,
        device: str = "cpu",
        start_timeout_s: float = 120.0,
        on_restart: Callable[[], None] | None = None,
    ) -> None:
        self.name = name
        self._initargs = (str(path), torch_threads, batch_size, cache_words, device)
        self.batch_timeout_s = batch_timeout_s
        self.start_timeout_s = start_timeout_s
        self._on_restart = on_restart
        self.restarts = 0
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._closed = False
        self._pool: ProcessPoolExecutor | None = None
        self._starting: Future[int] | None = None
        self.pid: int | None = None
        self._launch()

    def _launch(self) -> None:
        """Start a new pool; its process loads the model while the caller goes on."""
        pool = ProcessPoolExecutor(
            max_workers=1,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_load_model,
            initargs=self._initargs,
        )
        self._pool = pool
        self._starting = pool.submit(os.getpid)

    def wait_ready(self) -> None:
        """Block until the worker has loaded its model, or raise :class:`WorkerStartError`."""
        assert self._starting is not None
        try:
            self.pid = self._starting.result(timeout=self.start_timeout_s)
        except (BrokenProcessPool, FutureTimeout) as error:
            self.close(timeout=0)
            problem = "timed out" if isinstance(error, FutureTimeout) else "its process died"
            raise WorkerStartError(
                f"model {self.name}: the worker failed to start ({problem})"
            ) from None
        self._ready.set()
        threading.Thread(target=self._watch, name=f"watch-{self.name}", daemon=True).start()

    @property
    def alive(self) -> bool:
        """Whether a loaded worker is running now (false while one is being replaced)."""
        pool = self._pool
        return self._ready.is_set() and pool is not None and _all_alive(pool)

    def predict(self, sentences: list[list[str]]) -> list[TaggedSentence]:
        """Tag a batch in the worker (blocking; the batcher calls this from its thread)."""
        if not self._ready.wait(self.start_timeout_s) or self._pool is None:
            raise WorkerUnavailable(self.name, "is restarting")
        pool = self._pool
        try:
            future = pool.submit(_predict, sentences)
        except (BrokenProcessPool, RuntimeError):
            self._replace(pool, "died")
            raise WorkerUnavailable(self.name, "died") from None
        try:
            rows = future.result(timeout=self.batch_timeout_s)
        except FutureTimeout:
            problem = f"overran the batch timeout ({self.batch_timeout_s:g} s)"
            self._replace(pool, problem)
            raise WorkerUnavailable(self.name, problem) from None
        except BrokenProcessPool:
            self._replace(pool, "died")
            raise WorkerUnavailable(self.name, "died") from None
        return [TaggedSentence(tags, scores, intents) for tags, scores, intents in rows]

    def _replace(self, pool: ProcessPoolExecutor, problem: str) -> None:
        """Kill ``pool``'s worker (once, whoever notices first) and start another."""
        with self._lock:
            if self._closed or self._pool is not pool:
                return
            self._ready.clear()
            self.restarts += 1
            log.warning(
                "model %s: worker %s; replacing it (restart %d)", self.name, problem, self.restarts
            )
            _kill(pool)
            if self._on_restart is not None:
                self._on_restart()
            self._launch()
        threading.Thread(target=self._await_start, name=f"restart-{self.name}", daemon=True).start()

    def _await_start(self) -> None:
        starting, pool = self._starting, self._pool
        assert starting is not None and pool is not None
        try:
            self.pid = starting.result(timeout=self.start_timeout_s)
        except (BrokenProcessPool, FutureTimeout):
            time.sleep(1.0)
            self._replace(pool, "failed to start")
            return
        log.info("model %s: new worker ready (pid %d)", self.name, self.pid)
        self._ready.set()

    def _watch(self) -> None:
        """Notice a worker that died while idle, so /health and the next batch need not."""
        while not self._closed:
            time.sleep(0.5)
            pool = self._pool
            if pool is not None and self._ready.is_set() and not _all_alive(pool):
                self._replace(pool, "died")

    def close(self, timeout: float = 5.0) -> None:
        """Stop the worker: let it finish for up to ``timeout`` seconds, then kill it."""
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        self._ready.set()
        if pool is None:
            return
        processes = list(_processes(pool))
        pool.shutdown(wait=False, cancel_futures=True)
        deadline = time.monotonic() + timeout
        for process in processes:
            process.join(max(0.0, deadline - time.monotonic()))
        _kill(pool, processes)


def _processes(pool: ProcessPoolExecutor) -> list[multiprocessing.process.BaseProcess]:
    # The pool keeps no public handle on its processes before Python 3.14 (kill_workers).
    return list((getattr(pool, "_processes", None) or {}).values())


def _all_alive(pool: ProcessPoolExecutor) -> bool:
    processes = _processes(pool)
    return bool(processes) and all(p.is_alive() for p in processes)


def _kill(
    pool: ProcessPoolExecutor, processes: list[multiprocessing.process.BaseProcess] | None = None
) -> None:
    for process in processes if processes is not None else _processes(pool):
        with contextlib.suppress(OSError, AttributeError):
            process.kill()
    pool.shutdown(wait=False, cancel_futures=True)


# In the worker process.
_predictor: Predictor | None = None
_hang_token: str | None = None


def _load_model(
    path: str, torch_threads: int, batch_size: int, cache_words: int, device: str = "cpu"
) -> None:
    """The worker's initializer: threads first, then the model (onto ``device``)."""
    global _predictor, _hang_token
    # The server owns shutdown (it drains first, then stops us): its signals are not ours.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    die_with_parent()
    import torch

    from tagserve.model.artifact import load

    torch.set_num_threads(torch_threads)
    _predictor = Predictor(load(Path(path), device), batch_size=batch_size, cache_words=cache_words)
    _hang_token = os.environ.get(HANG_TOKEN_VARIABLE) or None


def _predict(
    sentences: list[list[str]],
) -> list[tuple[list[str], list[float], list[tuple[str, float]] | None]]:
    assert _predictor is not None
    if _hang_token is not None and any(_hang_token in sentence for sentence in sentences):
        time.sleep(3600)
    return [(t.tags, t.scores, t.intents) for t in _predictor.predict(sentences)]
