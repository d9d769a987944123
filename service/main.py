"""``tagserve serve``: load the models (failing fast, in one line), then run uvicorn."""

from __future__ import annotations

import logging
import sys
import time
from types import FrameType

import torch
import uvicorn
from fastapi import FastAPI
from pydantic import ValidationError

from tagserve.model.artifact import ArtifactError
from tagserve.service.app import create_app
from tagserve.service.metrics import Metrics
from tagserve.service.model_worker import WorkerStartError
from tagserve.service.registry import load_models
from tagserve.service.settings import Settings

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


def run(host: str = "127.0.0.1", port: int = 8000) -> None:
    """Start serving, or exit with status 1 and one line naming the bad setting or file.

    However serving ends (drained, forced by a second signal, or failed), no model worker
    process outlives this function.
    """
    try:
        settings = Settings()
        # The in-thread mode's thread count; worker processes set their own.
        torch.set_num_threads(settings.torch_threads)
        models = load_models(settings, metrics := Metrics(), in_processes=settings.model_process)
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        sys.exit(f"tagserve: error: setting TAGSERVE_{field.upper()}: {first['msg']}")
    except (ArtifactError, WorkerStartError) as error:
        sys.exit(f"tagserve: error: {error}")
    try:
        app = create_app(settings, models, metrics)
        logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
        logging.getLogger().setLevel(settings.log_level.upper())
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level=settings.log_level,
            timeout_graceful_shutdown=int(settings.drain_timeout_s) or None,
            timeout_keep_alive=settings.keep_alive_s,
            access_log=False,
        )
        # uvicorn routes SIGINT and SIGTERM to handle_exit.
        DrainingServer(config, app, settings.drain_notice_s).run()
    finally:
        for loaded in models.values():
            loaded.close_worker(timeout=1.0)
