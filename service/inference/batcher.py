"""Dynamic batching: sentences from concurrent requests share model batches.

Requests put their sentences on a bounded FIFO; one asyncio task takes up to
``max_batch_size`` of them (waiting at most ``max_wait_ms`` for a batch to fill while the
model is idle) and awaits the model on them: a model worker process over its socket, or an
in-process model in a thread of its own (:mod:`~tagserve.service.inference.in_process`),
so the event loop never blocks on CPU work. While a batch runs, new sentences queue up and
form the next one. Each sentence's future is resolved with its own result, so a request's
answers come back in its order however its sentences were spread across batches.

One request must never fail another: when the model raises on a batch, or its worker
overruns the batch timeout (and is killed), the batch's requests are run again one by one, so
only the request that caused it fails: with :class:`ModelFailure` (500), or, for a request
that hangs the model alone, :class:`ModelTimeout` (503 that must not be retried: replaying a
query of death would kill the next worker too). A worker that died for another reason
(:class:`WorkerUnavailable`) fails its batch with a retryable 503; it is being replaced.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from tagserve.model.tagged import TaggedSentence
from tagserve.service.errors import (
    ModelFailure,
    ModelTimeout,
    Overloaded,
    ShuttingDown,
    WorkerUnavailable,
)
from tagserve.service.inference.client import BatchTimeout

log = logging.getLogger(__name__)


class AsyncTagger(Protocol):
    """What a batcher awaits: a model worker's client (:mod:`tagserve.service.inference.client`)
    or a thread of this process (:mod:`tagserve.service.inference.in_process`)."""

    async def predict_async(self, sentences: list[list[str]]) -> list[TaggedSentence]:
        """One result per sentence, in input order."""
        ...


@dataclass(slots=True)
class _Pending:
    request: int
    words: list[str]
    future: asyncio.Future[TaggedSentence]


class Batcher:
    """Coalesces sentences into batches for one model."""

    def __init__(
        self,
        tagger: AsyncTagger,
        name: str,
        max_batch_size: int,
        max_wait_ms: float,
        max_queue: int,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self._tagger = tagger
        self.name = name
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000
        self.max_queue = max_queue
        self._on_batch = on_batch
        self._queue: deque[_Pending] = deque()
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.batches = 0
        self.sentences = 0
        self.largest_batch = 0
        self._requests = 0

    @property
    def waiting(self) -> int:
        """Sentences queued and not yet taken into a batch."""
        return len(self._queue)

    def start(self) -> None:
        """Start the batching task on the running loop."""
        self._wakeup = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name=f"batcher-{self.name}")

    async def submit(self, sentences: list[list[str]]) -> list[TaggedSentence]:
        """Tag ``sentences`` (non-empty token lists) through shared batches, in order."""
        if self._closed or self._wakeup is None:
            raise ShuttingDown("the service is shutting down")
        if not sentences:
            return []
        # A request larger than the whole queue is still admitted when nothing waits, so that
        # it can ever succeed; its size is bounded by the per-request limits.
        if self._queue and len(self._queue) + len(sentences) > self.max_queue:
            raise Overloaded(self.name, len(self._queue), self.max_queue)
        loop = asyncio.get_running_loop()
        futures = []
        self._requests += 1
        for words in sentences:
            future: asyncio.Future[TaggedSentence] = loop.create_future()
            self._queue.append(_Pending(self._requests, words, future))
            futures.append(future)
        self._wakeup.set()
        if len(futures) == 1:  # most requests: no gathering future needed
            return [await futures[0]]
        return list(await asyncio.gather(*futures))

    async def close(self, timeout: float) -> None:
        """Stop taking work and finish what is queued (up to ``timeout`` s); the model itself
        is closed by its owner afterwards."""
        self._closed = True
        if self._task is not None and self._wakeup is not None:
            self._wakeup.set()
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        for pending in self._queue:
            if not pending.future.done():
                pending.future.set_exception(ShuttingDown("the service is shutting down"))
        self._queue.clear()

    async def _run(self) -> None:
        assert self._wakeup is not None
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                if self._closed:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            await self._fill(loop)
            batch = [
                self._queue.popleft() for _ in range(min(self.max_batch_size, len(self._queue)))
            ]
            batch = [p for p in batch if not p.future.done()]
            if not batch:
                continue
            try:
                await self._run_batch(batch)
            except BatchTimeout as error:
                if len({p.request for p in batch}) == 1:
                    self._refuse_hanging(batch, error)  # it was alone: no need to try again
                else:
                    log.warning("model %s: %s; retrying its requests one by one", self.name, error)
                    await self._retry_singly(batch)
            except WorkerUnavailable as error:
                _fail(batch, error)
            except Exception:
                log.exception(
                    "model %s failed on a batch of %d sentences; retrying its requests one by one",
                    self.name,
                    len(batch),
                )
                await self._retry_singly(batch)

    async def _run_batch(self, batch: list[_Pending]) -> None:
        results = await self._tagger.predict_async([p.words for p in batch])
        self.batches += 1
        self.sentences += len(batch)
        self.largest_batch = max(self.largest_batch, len(batch))
        if self._on_batch is not None:
            self._on_batch(len(batch))
        for pending, result in zip(batch, results, strict=True):
            if not pending.future.done():
                pending.future.set_result(result)

    async def _retry_singly(self, batch: list[_Pending]) -> None:
        """Each request of a failed batch on its own: only the one that fails gets an error."""
        requests: dict[int, list[_Pending]] = {}
        for pending in batch:
            requests.setdefault(pending.request, []).append(pending)
        for request in requests.values():
            try:
                await self._run_batch(request)
            except BatchTimeout as error:
                self._refuse_hanging(request, error)
            except WorkerUnavailable as error:
                _fail(request, error)
            except Exception as error:
                log.exception("model %s failed on one request alone", self.name)
                _fail(request, ModelFailure(f"model {self.name} failed: {type(error).__name__}"))

    def _refuse_hanging(self, request: list[_Pending], error: BatchTimeout) -> None:
        """Fail a request that hangs the model alone, and drop the rest of its sentences from
        the queue, so none of them reaches (and kills) the new worker."""
        log.error("model %s: one request alone hangs the model: %s", self.name, error)
        _fail(request, ModelTimeout(self.name, error.problem))
        number = request[0].request
        for pending in self._queue:
            if pending.request == number:
                pending.future.cancel()

    async def _fill(self, loop: asyncio.AbstractEventLoop) -> None:
        """Give a part-full batch up to ``max_wait`` for more sentences to arrive."""
        assert self._wakeup is not None
        deadline = loop.time() + self.max_wait
        while len(self._queue) < self.max_batch_size and not self._closed:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except TimeoutError:
                return


def _fail(batch: list[_Pending], error: Exception) -> None:
    for pending in batch:
        if not pending.future.done():
            pending.future.set_exception(error)
