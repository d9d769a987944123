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
"""

from __future__ import annotations

from collections.abc import Iterable

from tagserve.service.errors import Overloaded
from tagserve.service.inference.registry import LoadedModel

# Body bytes per sentence for the estimate: a CoNLL-2003 test sentence is about 70
# characters of text plus JSON quoting; 200 under-counts, so the batcher stays the judge.
BYTES_PER_SENTENCE = 200


class Admission:
    """One HTTP worker's gate: ``admit`` before the body is parsed, ``release`` when done."""

    def __init__(self, max_inflight: int, max_queue: int, label: str) -> None:
        self.max_inflight = max_inflight
        self.max_queue = max_queue
        self.label = label  # the metric's model label: the body, naming the model, is unread
        self.inflight = 0

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
        """The admitted request is answered (or its client went away)."""
        self.inflight -= 1


def estimate_sentences(body_bytes: int) -> int:
    """A low estimate of the sentences in a body of ``body_bytes`` bytes (at least one)."""
    return max(1, body_bytes // BYTES_PER_SENTENCE)
