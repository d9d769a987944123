"""The models this process serves: their cards (read without torch) and the batcher in front
of each, whichever runs the model: a shared worker process (reached over its socket) or, in
the single-process mode, a thread of this one."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from tagserve.model.artifact_files import ArtifactError, ArtifactInfo, read_info
from tagserve.model.card import Precision
from tagserve.model.tagged import TaggedSentence
from tagserve.service.errors import WorkerStartError
from tagserve.service.inference.batcher import Batcher
from tagserve.service.inference.catalog import listed
from tagserve.service.inference.client import ModelClient
from tagserve.service.inference.manifest import Manifest
from tagserve.service.inference.owner import WorkerOwner
from tagserve.service.inference.protocol import WorkerAddress
from tagserve.service.metrics import Metrics
from tagserve.service.settings import Settings


class ModelRunner(Protocol):
    """What runs a model for this process: a worker's client (:class:`ModelClient`) or a
    thread of this one (:class:`~tagserve.service.inference.in_process.ThreadTagger`)."""

    @property
    def alive(self) -> bool:
        """Whether it can tag now (false while a worker process is being replaced)."""
        ...

    async def predict_async(self, sentences: list[list[str]]) -> list[TaggedSentence]:
        """One result per sentence, in input order."""
        ...

    def close(self, timeout: float = 0.0) -> None:
        """Let go of it (a worker process itself belongs to its owner)."""
        ...


@dataclass
class LoadedModel:
    """A model ready to serve under ``name``: its card, the batcher in front of it, what
    runs it, and (in the process that started it) the owner of its worker process.
    ``source``: what it was built from (its worker's socket), so that a reload keeps a model
    whose worker has not changed."""

    name: str
    info: ArtifactInfo
    batcher: Batcher
    tagger: ModelRunner
    owner: WorkerOwner | None = None
    source: str = ""
    precision: Precision = "float32"  # what it is served in (TAGSERVE_PRECISION, else the card)

    def worker_alive(self) -> bool:
        """False while the model's worker process is down (always true in a thread)."""
        return self.tagger.alive

    def close(self, timeout: float = 5.0) -> None:
        """Close what runs the model (after the batcher has drained), and its process if
        this process owns it."""
        self.tagger.close(timeout)
        if self.owner is not None:
            self.owner.close(timeout)

    def describe(self) -> dict[str, Any]:
        """What ``GET /models`` says about it."""
        card = self.info.card
        return {
            "name": self.name,
            "version": card.version,
            "dataset": card.dataset,
            "description": card.description,
            "scheme": self.info.labels.scheme,
            "entity_types": self.info.labels.entity_types,
            "labels": self.info.labels.labels,
            "intents": self.info.intents,
            "precision": self.precision,
            "test_metrics": _summary(card.test_metrics),
            "trained_at": card.trained_at,
        }


def model_names(settings: Settings) -> list[str]:
    """The models to serve, or :class:`ArtifactError` (none found, or the default missing)."""
    names = listed(settings)
    if not names:
        raise ArtifactError(
            settings.models_dir, "no model artifacts found (each needs a config.json)"
        )
    unknown = sorted(set(settings.precision) - set(names) - {"*"})
    if unknown:
        raise ArtifactError(
            settings.models_dir,
            f"TAGSERVE_PRECISION names {', '.join(map(repr, unknown))}, not among the loaded "
            f"models ({', '.join(names)})",
        )
    if settings.default_model not in names:
        raise ArtifactError(
            settings.models_dir / settings.default_model,
            f"default model {settings.default_model!r} is not among the loaded ones "
            f"({', '.join(names)})",
        )
    return names


def read_cards(settings: Settings) -> dict[str, ArtifactInfo]:
    """Every configured model's card, labels and intents, checked by the torch-free reader
    (raises :class:`ArtifactError` naming the file and field)."""
    return {name: read_info(settings.models_dir / name) for name in model_names(settings)}


def start_owners(
    settings: Settings, metrics: Metrics, names: list[str], run_dir: Path | None = None
) -> dict[str, WorkerOwner]:
    """Start one worker process per model and wait until each has loaded; on failure none is
    left running and :class:`WorkerStartError` says which model and why."""
    owners = {
        name: new_owner(settings, metrics, name, settings.models_dir / name, run_dir)
        for name in names
    }
    try:
        for owner in owners.values():
            owner.wait_ready()
    except WorkerStartError:
        for owner in owners.values():
            owner.close(timeout=0)
        raise
    return owners


def new_owner(
    settings: Settings, metrics: Metrics, name: str, path: Path, run_dir: Path | None = None
) -> WorkerOwner:
    """A worker process for the model at ``path``, loading as the caller goes on (its
    :meth:`~WorkerOwner.wait_ready` says whether it loaded)."""
    return WorkerOwner(
        name,
        path,
        torch_threads=settings.torch_threads,
        device=settings.device,
        batch_size=settings.max_batch_size,
        cache_words=settings.cache_words,
        precision=settings.precision.get(name, settings.precision.get("*")),
        on_restart=metrics.worker_restarts.labels(model=name).inc,
        run_dir=run_dir,
    )


def serve_remote(
    settings: Settings,
    metrics: Metrics,
    addresses: dict[str, WorkerAddress],
    owners: dict[str, WorkerOwner] | None = None,
) -> dict[str, LoadedModel]:
    """The models, each run by the worker process at its address (``owners``: the ones this
    process started and must stop). Reads only cards: no torch in this process."""
    infos = read_cards(settings)
    clients = {
        name: ModelClient(addresses[name], batch_timeout_s=settings.batch_timeout_s)
        for name in infos
    }
    return _with_batchers(settings, metrics, infos, clients, owners or {})


def from_manifest(
    settings: Settings,
    metrics: Metrics,
    manifest: Manifest,
    current: Mapping[str, LoadedModel] | None = None,
) -> dict[str, LoadedModel]:
    """The models of ``manifest``: each one of ``current`` whose worker is the same is kept
    as it is (its batcher and connections go on), the others are new (batchers not started).
    Reads no file: the cards come with the manifest."""
    current = current or {}
    models = {}
    for name, entry in manifest.models.items():
        kept = current.get(name)
        if kept is not None and kept.source == entry.address.socket_path:
            models[name] = kept
            continue
        client = ModelClient(entry.address, batch_timeout_s=settings.batch_timeout_s)
        models[name] = batched(settings, metrics, name, entry.info, client)
        models[name].source = entry.address.socket_path
    return models


def serve_in_threads(settings: Settings, metrics: Metrics) -> dict[str, LoadedModel]:
    """The models, each run by a predictor in a thread of this process (one HTTP worker,
    ``TAGSERVE_MODEL_PROCESS=false``, and tests): loads torch here."""
    from tagserve.service.inference.in_process import thread_taggers

    infos = read_cards(settings)
    return _with_batchers(settings, metrics, infos, thread_taggers(settings, list(infos)), {})


def thread_runner(settings: Settings, path: Path) -> ModelRunner:
    """The model at ``path`` loaded into a thread of this process (loads torch here)."""
    from tagserve.service.inference.in_process import thread_taggers

    here = settings.model_copy(update={"models_dir": path.parent})
    return thread_taggers(here, [path.name])[path.name]


def serve_in_processes(settings: Settings, metrics: Metrics) -> dict[str, LoadedModel]:
    """The models, each in a worker process that this process starts, owns and stops."""
    names = list(read_cards(settings))
    owners = start_owners(settings, metrics, names)
    addresses = {name: owner.address for name, owner in owners.items()}
    return serve_remote(settings, metrics, addresses, owners)


def _with_batchers(
    settings: Settings,
    metrics: Metrics,
    infos: dict[str, ArtifactInfo],
    taggers: Mapping[str, ModelRunner],
    owners: dict[str, WorkerOwner],
) -> dict[str, LoadedModel]:
    return {
        name: batched(settings, metrics, name, info, taggers[name], owners.get(name))
        for name, info in infos.items()
    }


def batched(
    settings: Settings,
    metrics: Metrics,
    name: str,
    info: ArtifactInfo,
    tagger: ModelRunner,
    owner: WorkerOwner | None = None,
) -> LoadedModel:
    """A model with a batcher in front of what runs it (the batcher starts on the event loop,
    with the app, or when a reload swaps it in)."""
    batcher = Batcher(
        tagger,
        name,
        settings.max_batch_size,
        settings.max_wait_ms,
        settings.max_queue,
        on_batch=metrics.batch_size.labels(model=name).observe,
    )
    metrics.track_queue(name, partial(_waiting, batcher))
    precision = settings.precision_for(name, info.card.precision)
    return LoadedModel(name, info, batcher, tagger, owner, precision=precision)


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
