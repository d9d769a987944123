"""What tagging a sentence gives, and what anything that tags must offer: torch-free, so an
HTTP worker (whose model runs in another process) never imports torch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from tagserve.model.schemes import Span, spans_from_tags


@dataclass(frozen=True, slots=True)
class TaggedSentence:
    """Tags and per-tag confidence (CRF marginal or softmax probability) of one sentence;
    for a model with an intent head, every intent with its probability, most likely first."""

    tags: list[str]
    scores: list[float]
    intents: list[tuple[str, float]] | None = None

    def spans(self, scheme: str) -> list[Span]:
        """Entity spans over token indices."""
        return spans_from_tags(self.tags, scheme)  # type: ignore[arg-type]


class SentenceTagger(Protocol):
    """Anything that tags a batch of tokenized sentences: a :class:`Predictor`, or the
    service's model worker that runs one in another process."""

    def predict(self, sentences: list[list[str]]) -> list[TaggedSentence]:
        """One result per sentence, in input order."""
        ...
