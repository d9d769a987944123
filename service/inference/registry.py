"""Loading the configured models and their batchers at start-up."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from tagserve.model.artifact_files import ArtifactError, ArtifactInfo, available, read_info
from tagserve.service.errors import WorkerStartError
from tagserve.service.inference.batcher import Batcher, ThreadTagger
from tagserve.service.inference.model_worker import ModelClient, ModelWorker, WorkerAddress
from tagserve.service.metrics import Metrics
from tagserve.service.settings import Settings

if TYPE_CHECKING:
    from tagserve.model.artifact import ModelBundle


@dataclass
class LoadedModel:
    """A model ready to serve under ``name``: its artifact, and the batcher in front of it."""

    name: str
    bundle: ArtifactInfo
    batcher: Batcher
    # What runs the model: a worker process (owned here, or reached) or a thread of this one.
    worker: ModelWorker | ModelClient | ThreadTagger

    def worker_alive(self) -> bool:
        """False while the model's worker process is down (always true in a thread)."""
        return self.worker.alive

    def close_worker(self, timeout: float = 5.0) -> None:
        """Stop the model's worker (after the batcher has drained)."""
        self.worker.close(timeout)

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
            "intents": self.bundle.intents,
            "test_metrics": _summary(card.test_metrics),
            "trained_at": card.trained_at,
        }


def load_models(
    settings: Settings,
    metrics: Metrics,
    in_processes: bool = False,
    remote: dict[str, WorkerAddress] | None = None,
) -> dict[str, LoadedModel]:
    """Load and check every configured model, or raise :class:`ArtifactError` naming the bad
    file (or :class:`WorkerStartError`); on failure no worker process is left running.

    With ``in_processes`` each model is served by a worker process of its own that this
    process starts (:mod:`tagserve.service.inference.model_worker`); with ``remote`` (an HTTP
    worker of
    ``tagserve serve --workers N``) by the workers already running at those addresses;
    otherwise by a predictor in this process.
    """
    workers: dict[str, ModelWorker | ModelClient | ThreadTagger] = {}
    if remote is not None:
        # An HTTP worker of several: the models run in the shared model workers, so this
        # process reads only cards and labels, and never imports torch.
        infos = {name: read_info(settings.models_dir / name) for name in _names(settings)}
        workers = {
            name: ModelClient(remote[name], batch_timeout_s=settings.batch_timeout_s)
            for name in infos
        }
    else:
        # Every artifact is loaded and checked before any worker process is started.
        device = "cpu" if in_processes else settings.device
        bundles = check_artifacts(settings, device)
        infos = {name: bundle.info for name, bundle in bundles.items()}
        if in_processes:
            workers = dict(start_workers(settings, metrics, list(bundles)))
            del bundles  # the workers hold the weights; this process needs only the cards
        else:
            from tagserve.model.predictor import Predictor

            workers = {
                name: ThreadTagger(
                    Predictor(
                        bundle, batch_size=settings.max_batch_size, cache_words=settings.cache_words
                    ),
                    name,
                )
                for name, bundle in bundles.items()
            }
    loaded = {}
    for name, info in infos.items():
        batcher = Batcher(
            workers[name],
            name,
            settings.max_batch_size,
            settings.max_wait_ms,
            settings.max_queue,
            on_batch=metrics.batch_size.labels(model=name).observe,
        )
        metrics.track_queue(name, partial(_waiting, batcher))
        loaded[name] = LoadedModel(name, info, batcher, workers[name])
    return loaded


def _names(settings: Settings) -> list[str]:
    names = settings.models or available(settings.models_dir)
    if not names:
        raise ArtifactError(
            settings.models_dir, "no model artifacts found (each needs a config.json)"
        )
    if settings.default_model not in names:
        raise ArtifactError(
            settings.models_dir / settings.default_model,
            f"default model {settings.default_model!r} is not among the loaded ones "
            f"({', '.join(names)})",
        )
    return names


def check_artifacts(settings: Settings, device: str) -> dict[str, ModelBundle]:
    """Load every configured artifact onto ``device``, or raise :class:`ArtifactError`
    naming the bad file (or the default model that is not among them)."""
    from tagserve.model.artifact import load

    return {name: load(settings.models_dir / name, device) for name in _names(settings)}


def start_workers(settings: Settings, metrics: Metrics, names: list[str]) -> dict[str, ModelWorker]:
    """Start one worker process per model and wait until each has loaded; on failure none is
    left running."""
    workers = {name: _start_worker(name, settings, metrics) for name in names}
    try:
        for worker in workers.values():
            worker.wait_ready()
    except WorkerStartError:
        for worker in workers.values():
            worker.close(timeout=0)
        raise
    return workers


def _start_worker(name: str, settings: Settings, metrics: Metrics) -> ModelWorker:
    restarts = metrics.worker_restarts.labels(model=name)
    return ModelWorker(
        name,
        settings.models_dir / name,
        torch_threads=settings.torch_threads,
        device=settings.device,
        batch_size=settings.max_batch_size,
        cache_words=settings.cache_words,
        batch_timeout_s=settings.batch_timeout_s,
        on_restart=restarts.inc,
    )


def _waiting(batcher: Batcher) -> float:
    """Queue depth for the Prometheus gauge, read at scrape time."""
    return float(batcher.waiting)


def _summary(metrics: dict[str, Any] | None) -> dict[str, Any] | None:
    if not metrics:
        return None
    keys = (
        "precision",
        "recall",
        "f1",
        "f1_lower",
        "f1_upper",
        "intent_accuracy",
        "frame_accuracy",
        "sentences",
        "tokens",
    )
    return {k: metrics[k] for k in keys if k in metrics}
