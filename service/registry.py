"""Loading the configured models and their batchers at start-up."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

from model.artifact import ArtifactError, ModelBundle, available, load
from model.predictor import Predictor
from service.batcher import Batcher
from service.metrics import Metrics
from service.settings import Settings
from service.tagging import ModelProfile


@dataclass
class LoadedModel:
    """A model ready to serve: weights, what it expects, and its batcher."""

    profile: ModelProfile
    bundle: ModelBundle
    batcher: Batcher

    def info(self) -> dict[str, Any]:
        """What ``GET /models`` says about it."""
        meta = self.bundle.metadata
        return {
            "name": self.profile.name,
            "version": self.profile.version,
            "dataset": meta.get("dataset", ""),
            "description": meta.get("description", ""),
            "scheme": self.profile.scheme,
            "entity_types": meta.get("entity_types", []),
            "labels": self.bundle.labels.labels,
            "test_metrics": _summary(meta.get("test_metrics")),
            "trained_at": meta.get("trained_at"),
        }


def load_models(settings: Settings, metrics: Metrics) -> dict[str, LoadedModel]:
    """Load every configured model or raise :class:`ArtifactError` naming the bad file."""
    names = settings.models or available(settings.models_dir)
    if not names:
        raise ArtifactError(
            settings.models_dir, "no model artifacts found (each needs a config.json)"
        )
    loaded = {}
    for name in names:
        bundle = load(settings.models_dir / name)
        predictor = Predictor(
            bundle, batch_size=settings.max_batch_size, cache_words=settings.cache_words
        )
        batch_histogram = metrics.batch_size.labels(model=name)
        batcher = Batcher(
            predictor.predict,
            name,
            settings.max_batch_size,
            settings.max_wait_ms,
            settings.max_queue,
            on_batch=batch_histogram.observe,
        )
        metrics.queue_depth.labels(model=name).set_function(partial(_waiting, batcher))
        loaded[name] = LoadedModel(ModelProfile.of(name, bundle), bundle, batcher)
    if settings.default_model not in loaded:
        raise ArtifactError(
            settings.models_dir / settings.default_model,
            f"default model {settings.default_model!r} is not among the loaded ones "
            f"({', '.join(loaded)})",
        )
    return loaded


def _waiting(batcher: Batcher) -> float:
    """Queue depth for the Prometheus gauge, read at scrape time."""
    return float(batcher.waiting)


def _summary(metrics: dict[str, Any] | None) -> dict[str, Any] | None:
    if not metrics:
        return None
    return {
        k: metrics[k] for k in ("precision", "recall", "f1", "sentences", "tokens") if k in metrics
    }
