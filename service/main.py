"""``tagserve serve``: load the models (failing fast, in one line), then run uvicorn."""

from __future__ import annotations

import logging
import sys
from types import FrameType

import uvicorn
from fastapi import FastAPI
from pydantic import ValidationError

from model.artifact import ArtifactError
from service.app import create_app
from service.metrics import Metrics
from service.registry import load_models
from service.settings import Settings


class DrainingServer(uvicorn.Server):
    """Turns /health to 503 as soon as SIGTERM/SIGINT arrives, then shuts down gracefully."""

    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self.tagserve_app = app

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.tagserve_app.state.status = "draining"
        super().handle_exit(sig, frame)


def run(host: str = "127.0.0.1", port: int = 8000) -> None:
    """Start serving, or exit with status 2 and one line naming the bad setting or file."""
    try:
        settings = Settings()
        models = load_models(settings, metrics := Metrics())
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        sys.exit(f"tagserve: error: setting TAGSERVE_{field.upper()}: {first['msg']}")
    except ArtifactError as error:
        sys.exit(f"tagserve: error: {error}")
    app = create_app(settings, models, metrics)
    logging.basicConfig(level=settings.log_level.upper())
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=settings.log_level,
        timeout_graceful_shutdown=int(settings.drain_timeout_s) or None,
        access_log=False,
    )
    # uvicorn routes SIGINT and SIGTERM to handle_exit.
    DrainingServer(config, app).run()
