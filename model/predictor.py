"""Pure prediction: token lists in, new tag and confidence lists out, in input order."""

from __future__ import annotations

from pathlib import Path

import torch

from tagserve.model.artifact import ModelBundle, load
from tagserve.model.encoding import encode
from tagserve.model.feature_cache import WordFeatureCache
from tagserve.model.tagged import SentenceTagger, TaggedSentence

__all__ = ["Predictor", "SentenceTagger", "TaggedSentence"]


class Predictor:
    """Runs a loaded model over batches of tokenized sentences.

    Sentences are sorted by length and cut into chunks of ``batch_size`` so padding stays
    small; results come back in the caller's order. Empty sentences give empty results.
    With ``cache_words`` > 0, word input vectors are memoised (:class:`WordFeatureCache`), so
    the bundle's weights must not change while this predictor is in use.
    """

    def __init__(self, bundle: ModelBundle, batch_size: int = 128, cache_words: int = 0) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.bundle = bundle
        self.batch_size = batch_size
        self.device = next(bundle.network.parameters()).device
        self.cache = (
            WordFeatureCache(
                bundle.network,
                bundle.words,
                bundle.chars,
                bundle.config.max_word_chars,
                capacity=cache_words,
            )
            if cache_words > 0
            else None
        )

    @classmethod
    def from_path(cls, path: Path, device: str = "cpu", batch_size: int = 128) -> Predictor:
        """Load an artifact directory."""
        return cls(load(path, device), batch_size)

    @property
    def scheme(self) -> str:
        """The model's tagging scheme."""
        return self.bundle.labels.scheme

    def predict(self, sentences: list[list[str]]) -> list[TaggedSentence]:
        """Tag each sentence; the input lists are not modified."""
        results: list[TaggedSentence | None] = [None] * len(sentences)
        # Longest first: batches then pack without a reordering copy.
        order = sorted((i for i, s in enumerate(sentences) if s), key=lambda i: -len(sentences[i]))
        for i, sentence in enumerate(sentences):
            if not sentence:
                results[i] = TaggedSentence([], [])
        labels = self.bundle.labels.labels
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                chunk = order[start : start + self.batch_size]
                paths, scores, intents = self._decode([sentences[i] for i in chunk])
                for n, (i, path, score) in enumerate(zip(chunk, paths, scores, strict=True)):
                    ranked = intents[n] if intents is not None else None
                    results[i] = TaggedSentence([labels[k] for k in path], score, ranked)
        return [r for r in results if r is not None]

    def _decode(
        self, sentences: list[list[str]]
    ) -> tuple[list[list[int]], list[list[float]], list[list[tuple[str, float]]] | None]:
        network = self.bundle.network
        if self.cache is None:
            config = self.bundle.config
            batch = encode(sentences, self.bundle.words, self.bundle.chars, config.max_word_chars)
            batch = batch.to(self.device)
            features, lengths = network.features(batch), batch.lengths
        else:
            features, lengths = self.cache.batch(sentences)
        encoded = network.encode(features, lengths)
        paths, scores = network.decode(network.emissions(encoded), lengths)
        if not self.bundle.intents:
            return paths, scores, None
        probabilities = network.intent_logits(encoded).softmax(dim=1)
        ranked = probabilities.sort(dim=1, descending=True)
        names = self.bundle.intents
        intents = [
            [(names[k], p) for k, p in zip(row_index, row_value, strict=True)]
            for row_index, row_value in zip(
                ranked.indices.tolist(), ranked.values.tolist(), strict=True
            )
        ]
        return paths, scores, intents
