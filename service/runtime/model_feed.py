"""How an HTTP worker follows the models ``tagserve serve`` serves, reload after reload.

The server publishes each generation of models (0 at start-up, one more after each SIGHUP)
in two steps: it writes the manifest (:mod:`tagserve.service.inference.manifest`), then
raises a shared integer, ``published``. Every HTTP worker compares that integer with its own
at each tick of its event loop (every 0.1 s): when it has moved on, the worker re-reads the
manifest, swaps its models in one assignment (:func:`~tagserve.service.api.app.swap_models`),
lets the old ones finish their queued batches, and only then raises its own shared integer,
``applied``. The server retires an old model worker once every live HTTP worker has applied
the generation without it, so no batch is ever sent to a worker that has stopped. No signal
reaches an HTTP worker: a worker still starting cannot miss a reload (it reads the newest
manifest when it starts) or be killed by a signal it does not handle yet.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from tagserve.service.api.app import create_app, swap_models
from tagserve.service.inference.manifest import read_manifest
from tagserve.service.inference.registry import LoadedModel, from_manifest
from tagserve.service.metrics import Metrics
from tagserve.service.settings import Settings

log = logging.getLogger(__name__)
# Given the models served now, the newest generation's number and models.
Source = Callable[[dict[str, LoadedModel]], tuple[int, dict[str, LoadedModel]]]


@dataclass(frozen=True)
class ModelFeed:
    """What an HTTP worker follows: the manifest file ("" when models run in this process's
    threads), the generation the server has published, and the one this worker has applied
    (both shared integers, so picklable only while spawning a process)."""

    manifest: str
    published: Any
    applied: Any = None

    def for_worker(self, context: Any) -> ModelFeed:
        """This feed with an ``applied`` of a new worker's own (-1: nothing applied yet)."""
        return replace(self, applied=context.Value("q", -1, lock=False))


def manifest_source(settings: Settings, metrics: Metrics, manifest: str) -> Source:
    """Models from the manifest file; those whose worker is unchanged are kept as they are."""

    def source(current: dict[str, LoadedModel]) -> tuple[int, dict[str, LoadedModel]]:
        read = read_manifest(Path(manifest))
        return read.generation, from_manifest(settings, metrics, read, current)

    return source


def follow_manifest(
    settings: Settings, metrics: Metrics, feed: ModelFeed
) -> tuple[FastAPI, ModelFollower]:
    """An HTTP worker's app on the newest manifest's models, and what keeps it following."""
    source = manifest_source(settings, metrics, feed.manifest)
    generation, models = source({})
    app = create_app(settings, models, metrics)
    app.state.generation = generation
    feed.applied.value = generation
    return app, ModelFollower(app, feed, source, generation)


class ModelFollower:
    """Applies each newly published generation to ``app``, one at a time, on its event loop
    (:meth:`tick` is called by the server at every tick)."""

    def __init__(self, app: FastAPI, feed: ModelFeed, source: Source, generation: int) -> None:
        self.app = app
        self.feed = feed
        self.source = source
        self.seen = generation
        self._task: asyncio.Task[None] | None = None

    def tick(self) -> None:
        """Start applying the published generation if it is newer than the one served."""
        if self._task is None and self.feed.published.value > self.seen:
            self._task = asyncio.get_running_loop().create_task(self._apply())

    async def _apply(self) -> None:
        published = self.feed.published.value
        try:
            generation, models = self.source(self.app.state.models)
            await swap_models(self.app, models, generation)
            self.feed.applied.value = generation
            self.seen = generation
            log.debug("models of generation %d applied: %s", generation, ", ".join(models))
        except Exception:
            # Not retried at every tick: the next reload tries again.
            log.exception("could not apply the models of generation %d", published)
            self.seen = published
        finally:
            self._task = None
