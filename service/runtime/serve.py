"""``tagserve serve``: load the models (failing fast, in one line), then run uvicorn: in this
process (``--workers 1``), or in N HTTP worker processes that share the model workers."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import time
from types import FrameType
from typing import TYPE_CHECKING

import uvicorn
from pydantic import ValidationError
from pydantic_settings import SettingsError

from tagserve.model.artifact_files import ArtifactError
from tagserve.service.errors import WorkerStartError
from tagserve.service.inference.model_worker import ModelClient, ModelWorker
from tagserve.service.runtime.supervisor import (
    Supervisor,
    available_cpus,
    prepare_metrics_dir,
    reserve_port,
)
from tagserve.service.settings import Settings

if TYPE_CHECKING:
    from fastapi import FastAPI

    from tagserve.service.inference.batcher import ThreadTagger

log = logging.getLogger(__name__)


class DrainingServer(uvicorn.Server):
    """On SIGTERM/SIGINT: /health turns 503 at once, serving goes on for ``notice_s`` (so a
    load balancer stops routing here), then uvicorn closes the listener and waits for
    in-flight requests (up to its graceful-shutdown timeout). A second signal stops at once."""

    def __init__(self, config: uvicorn.Config, app: FastAPI, notice_s: float) -> None:
        super().__init__(config)
        self.tagserve_app = app
        self.notice_s = notice_s
        self.drain_started: float | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.drain_started is not None:
            log.warning("signal %d again: stopping now", sig)
            self.should_exit = True
            self.force_exit = True
            return
        self.tagserve_app.state.status = "draining"
        self.drain_started = time.monotonic()
        log.info("signal %d: draining (notice %.1fs, then graceful shutdown)", sig, self.notice_s)

    async def on_tick(self, counter: int) -> bool:
        started = self.drain_started
        if started is not None and time.monotonic() - started >= self.notice_s:
            self.should_exit = True
        return await super().on_tick(counter)


def configure_logging(settings: Settings) -> None:
    """One log format for the server and its workers."""
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(settings.log_level.upper())


def uvicorn_config(settings: Settings, app: FastAPI, **where: object) -> uvicorn.Config:
    """The uvicorn settings every HTTP worker shares (``where``: host and port, when uvicorn
    binds the socket itself)."""
    return uvicorn.Config(
        app,
        log_level=settings.log_level,
        timeout_graceful_shutdown=int(settings.drain_timeout_s) or None,
        timeout_keep_alive=settings.keep_alive_s,
        access_log=False,
        **where,  # type: ignore[arg-type]
    )


def _settings_or_exit() -> Settings:
    try:
        return Settings()
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        sys.exit(f"tagserve: error: setting TAGSERVE_{field.upper()}: {first['msg']}")
    except SettingsError as error:
        # A value pydantic-settings could not even decode (its message names the field).
        sys.exit(f"tagserve: error: {error}")


def run(host: str = "127.0.0.1", port: int = 8000, workers: int | None = None) -> None:
    """Start serving, or exit with status 1 and one line naming the bad setting or file.

    ``workers``: HTTP worker processes (default ``TAGSERVE_WORKERS``, else the cores this
    process may use). However serving ends (drained, forced by a second signal, or failed),
    no worker process outlives this function.
    """
    settings = _settings_or_exit()
    count = workers or settings.workers or available_cpus()
    # Several processes share metrics through files; a directory the user set is used (and
    # wiped at start-up) even with one worker, since prometheus-client then reads files.
    given_dir = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
    created_metrics_dir = count > 1 and not given_dir
    metrics_dir = prepare_metrics_dir() if count > 1 or given_dir else None
    # Imported only now: prometheus-client picks its multiprocess mode at import.
    import torch

    from tagserve.service.api.app import create_app
    from tagserve.service.inference.registry import check_artifacts, load_models, start_workers
    from tagserve.service.metrics import Metrics

    metrics = Metrics()
    shared: list[ModelWorker] = []  # model workers the HTTP worker processes reach
    try:
        if count == 1:
            # The in-thread mode's thread count; worker processes set their own.
            torch.set_num_threads(settings.torch_threads)
            models = load_models(settings, metrics, in_processes=settings.model_process)
            owners: list[ModelWorker | ModelClient | ThreadTagger] = [
                m.worker for m in models.values()
            ]
        else:
            names = list(check_artifacts(settings, device="cpu"))
            shared = list(start_workers(settings, metrics, names).values())
            owners = list(shared)
    except (ArtifactError, WorkerStartError) as error:
        sys.exit(f"tagserve: error: {error}")
    configure_logging(settings)
    try:
        if count == 1:
            app = create_app(settings, models, metrics)
            config = uvicorn_config(settings, app, host=host, port=port)
            # uvicorn routes SIGINT and SIGTERM to handle_exit.
            DrainingServer(config, app, settings.drain_notice_s).run()
        else:
            with reserve_port(host, port) as reserved:
                supervisor = Supervisor(host, count, reserved, [w.address for w in shared])
                code = supervisor.run()
            if code:
                sys.exit(code)
    finally:
        for owner in owners:
            owner.close(timeout=1.0)
        if metrics_dir is not None and created_metrics_dir:
            with contextlib.suppress(OSError):
                shutil.rmtree(metrics_dir)
