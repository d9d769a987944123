"""Pure prediction: token lists in, new tag and confidence lists out, in input order."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from model.artifact import ModelBundle, load
from model.encoding import encode
from model.schemes import Span, spans_from_tags


@dataclass(frozen=True, slots=True)
class TaggedSentence:
    """Tags and per-tag confidence (CRF marginal or softmax probability) of one sentence."""

    tags: list[str]
    scores: list[float]

    def spans(self, scheme: str) -> list[Span]:
        """Entity spans over token indices."""
        return spans_from_tags(self.tags, scheme)  # type: ignore[arg-type]


class Predictor:
    """Runs a loaded model over batches of tokenized sentences.

    Sentences are sorted by length and cut into chunks of ``batch_size`` so padding stays
    small; results come back in the caller's order. Empty sentences give empty results.
    """

    def __init__(self, bundle: ModelBundle, batch_size: int = 128) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.bundle = bundle
        self.batch_size = batch_size
        self.device = next(bundle.network.parameters()).device

    @classmethod
    def from_path(cls, path: Path, device: str = "cpu", batch_size: int = 128) -> Predictor:
        """Load an artifact directory."""
        return cls(load(path, device), batch_size)

    @property
    def scheme(self) -> str:
        """The model's tagging scheme."""
        return self.bundle.config.scheme

    def predict(self, sentences: list[list[str]]) -> list[TaggedSentence]:
        """Tag each sentence; the input lists are not modified."""
        results: list[TaggedSentence | None] = [None] * len(sentences)
        order = sorted((i for i, s in enumerate(sentences) if s), key=lambda i: len(sentences[i]))
        for i, sentence in enumerate(sentences):
            if not sentence:
                results[i] = TaggedSentence([], [])
        labels = self.bundle.labels.labels
        config = self.bundle.config
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                chunk = order[start : start + self.batch_size]
                batch = encode(
                    [sentences[i] for i in chunk],
                    self.bundle.words,
                    self.bundle.chars,
                    config.max_word_chars,
                ).to(self.device)
                paths, scores = self.bundle.network.decode(batch)
                for i, path, score in zip(chunk, paths, scores, strict=True):
                    results[i] = TaggedSentence([labels[k] for k in path], score)
        return [r for r in results if r is not None]
