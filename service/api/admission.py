"""Admission for ``POST /tag``: refuse before any work, from what is cheap to know.

A refusal that comes after parsing, validating, tokenizing and splitting the body costs the
HTTP worker nearly as much CPU as an answer: under overload the HTTP workers then spend the
cores on 503s and starve the model worker (the issue "Overload must not starve the model").
So each HTTP worker decides first, from two counters and the body's length, whether the
request can be queued at all: a bound on the ``/tag`` requests it holds
(``TAGSERVE_MAX_INFLIGHT``), and the sentences already waiting in its batchers plus an
estimate of this request's sentences (characters are a fine proxy) against
``TAGSERVE_MAX_QUEUE``. The estimate errs low, so a request this lets through can still be
refused by the sentence-accurate check in :meth:`Batcher.submit`, the second line.
Refusals are :class:`Overloaded` (503 with ``Retry-After``), counted under the default
model's name in ``tagserve_overload_rejections_total``.

A request that does not fit is first held, for up to ``TAGSERVE_OVERLOAD_HOLD_S``, in a FIFO
waiting room (it costs a timer, not CPU): each answered request wakes the longest-waiting
one. Clients that ignore ``Retry-After`` and resend at once (most load generators, many
retry loops) would otherwise turn every refusal into another request, and the HTTP workers
would spend the cores answering 503s while the model waits; held, a crowd is paced by the
model's own rate. The room is bounded in requests and bytes; past it, or after the hold,
the 503 goes out.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable

from tagserve.service.errors import Overloaded
from tagserve.service.inference.registry import LoadedModel

# Body bytes per sentence for the estimate: a CoNLL-2003 test sentence is about 70
# characters of text plus JSON quoting; 200 under-counts, so the batcher stays the judge.
BYTES_PER_SENTENCE = 200
# Bodies held in the waiting room at once, per HTTP worker (each is already read).
MAX_HELD_BYTES = 64 * 1024 * 1024


class Admission:
    """One HTTP worker's gate: ``admit`` before the body is parsed, ``release`` when done."""

    def __init__(
        self,
        max_inflight: int,
        max_queue: int,
        label: str,
        hold_s: float = 0.0,
        max_held_bytes: int = MAX_HELD_BYTES,
    ) -> None:
        self.max_inflight = max_inflight
        self.max_queue = max_queue
        self.label = label  # the metric's model label: the body, naming the model, is unread
        self.hold_s = hold_s
        self.max_held_bytes = max_held_bytes
        self.inflight = 0
        self.held_bytes = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def held(self) -> int:
        """Requests waiting in the room now."""
        return len(self._waiters)

    async def enter(self, body_bytes: int, models: Iterable[LoadedModel]) -> None:
        """Count the request in, holding it (FIFO, up to ``hold_s``) while it does not fit;
        raises :class:`Overloaded` when the hold runs out or the room is full."""
        models = list(models)
        if not self._waiters:
            try:
                self.admit(body_bytes, models)
                return
            except Overloaded as refusal:
                if self.hold_s <= 0 or self.held_bytes + body_bytes > self.max_held_bytes:
                    raise
                last = refusal
        elif self.hold_s <= 0 or self.held_bytes + body_bytes > self.max_held_bytes:
            self.admit(body_bytes, models)  # no room to wait in: admitted or refused now
            return
        else:
            last = None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.hold_s
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.append(waiter)
        self.held_bytes += body_bytes
        try:
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise TimeoutError
                async with asyncio.timeout(remaining):
                    await waiter
                try:
                    self.admit(body_bytes, models)
                except Overloaded as refusal:  # woken but still no room: first in line again
                    last = refusal
                    waiter = loop.create_future()
                    self._waiters.appendleft(waiter)
                    continue
                self._wake_next()  # room for this one: maybe for the next too
                return
        except asyncio.CancelledError:  # the client went away while held
            if waiter.done():
                self._wake_next()  # it was woken: pass the turn on
            elif waiter in self._waiters:
                self._waiters.remove(waiter)
            raise
        except TimeoutError:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
            if last is None:
                try:
                    self.admit(body_bytes, models)
                    return
                except Overloaded as refusal:
                    last = refusal
            raise last from None
        finally:
            self.held_bytes -= body_bytes

    def admit(self, body_bytes: int, models: Iterable[LoadedModel]) -> None:
        """Count the request in, or raise :class:`Overloaded` (nothing counted)."""
        if self.inflight >= self.max_inflight:
            raise Overloaded(
                self.label,
                0,
                self.max_queue,
                detail=f"this HTTP worker is at capacity ({self.inflight} requests in "
                f"progress, limit {self.max_inflight}, TAGSERVE_MAX_INFLIGHT); retry later",
            )
        waiting = sum(m.batcher.waiting for m in models)
        # As in Batcher.submit: with nothing waiting even a large request is taken.
        if waiting and waiting + estimate_sentences(body_bytes) > self.max_queue:
            raise Overloaded(
                self.label,
                waiting,
                self.max_queue,
                detail=f"this HTTP worker is at capacity ({waiting} sentences queued, limit "
                f"{self.max_queue}, TAGSERVE_MAX_QUEUE); retry later",
            )
        self.inflight += 1

    def release(self) -> None:
        """The admitted request is answered (or its client went away): the longest-held
        request may now fit."""
        self.inflight -= 1
        self._wake_next()

    def _wake_next(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return


def estimate_sentences(body_bytes: int) -> int:
    """A low estimate of the sentences in a body of ``body_bytes`` bytes (at least one)."""
    return max(1, body_bytes // BYTES_PER_SENTENCE)
