"""Loading the configured models and their batchers at start-up."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

from tagserve.model.artifact import ArtifactError, ModelBundle, available, load
from tagserve.model.predictor import Predictor
from tagserve.service.batcher import Batcher
from tagserve.service.metrics import Metrics
from tagserve.service.model_process import ModelProcess
from tagserve.service.settings import Settings


@dataclass
class LoadedModel:
    """A model ready to serve under ``name``: its artifact, and the batcher in front of it."""

    name: str
    bundle: ModelBundle
    batcher: Batcher
    process: ModelProcess | None = None

    def process_alive(self) -> bool:
        """False when the model's child process has died (true for in-thread models)."""
        return self.process is None or self.process.alive

    def close_process(self) -> None:
        """Stop the model's child process, if it has one (after the batcher has drained)."""
        if self.process is not None:
            self.process.close()

    def info(self) -> dict[str, Any]:
        """What ``GET /models`` says about it."""
        card = self.bundle.card
        return {
            "name": self.name,
            "version": card.version,
            "dataset": card.dataset,
            "description": card.description,
            "scheme": self.bundle.labels.scheme,
            "entity_types": self.bundle.labels.entity_types,
            "labels": self.bundle.labels.labels,
            "test_metrics": _summary(card.test_metrics),
            "trained_at": card.trained_at,
        }


def load_models(
    settings: Settings, metrics: Metrics, in_processes: bool = False
) -> dict[str, LoadedModel]:
    """Load every configured model or raise :class:`ArtifactError` naming the bad file.

    With ``in_processes`` each model runs in a forked child (:mod:`service.model_process`);
    only safe before the server has started threads, which is how ``tagserve serve`` calls it.
    """
    names = settings.models or available(settings.models_dir)
    if not names:
        raise ArtifactError(
            settings.models_dir, "no model artifacts found (each needs a config.json)"
        )
    # Every artifact is loaded and checked before any child process is started.
    bundles = {name: load(settings.models_dir / name) for name in names}
    if settings.default_model not in bundles:
        raise ArtifactError(
            settings.models_dir / settings.default_model,
            f"default model {settings.default_model!r} is not among the loaded ones "
            f"({', '.join(bundles)})",
        )
    loaded = {}
    for name, bundle in bundles.items():
        predictor = Predictor(
            bundle, batch_size=settings.max_batch_size, cache_words=settings.cache_words
        )
        process = ModelProcess(predictor, name, settings.torch_threads) if in_processes else None
        batcher = Batcher(
            process if process is not None else predictor,
            name,
            settings.max_batch_size,
            settings.max_wait_ms,
            settings.max_queue,
            on_batch=metrics.batch_size.labels(model=name).observe,
        )
        metrics.queue_depth.labels(model=name).set_function(partial(_waiting, batcher))
        loaded[name] = LoadedModel(name, bundle, batcher, process)
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
