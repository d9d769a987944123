"""The FastAPI application: models load in the lifespan, routes reach them through app.state."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from tagserve.service.api import handlers
from tagserve.service.api.admission import Admission
from tagserve.service.api.labelstudio.routes import router as labelstudio_router
from tagserve.service.api.middleware import BodyLimit, RequestMetrics
from tagserve.service.api.routes import router
from tagserve.service.inference.registry import LoadedModel, serve_in_threads
from tagserve.service.metrics import Metrics
from tagserve.service.settings import Settings, get_settings

log = logging.getLogger(__name__)
STATIC_DIR = Path(__file__).parent / "static"
DESCRIPTION = """Sequence labeling over HTTP: named entities (CoNLL-2003) and ATIS slots.

Send raw text (a sentence or a whole document) and get every token with its character
offsets, IOB2 tag and confidence, plus the entity spans. Requests from many clients are
batched together for the model."""


# FastAPI's built-in OpenTelemetry hooks cost tens of microseconds a request even with no
# provider configured; tagserve exports Prometheus metrics instead. (Older FastAPI versions
# have no such option.)
_NO_TELEMETRY: dict[str, Any] = (
    {"telemetry": {"tracing": False, "metrics": False, "logs": False, "operation_spans": False}}
    if "telemetry" in inspect.signature(FastAPI.__init__).parameters
    else {}
)


def create_app(
    settings: Settings | None = None,
    models: dict[str, LoadedModel] | None = None,
    metrics: Metrics | None = None,
) -> FastAPI:
    """Build the app; ``models``: the models reached or started by the caller (``tagserve
    serve`` does, to fail fast on bad artifacts); by default they load in the lifespan."""
    settings = settings or get_settings()
    metrics = metrics or Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Models given: the caller reached (or started) them. Else they run in this
        # process's threads (tests, and the single-process mode).
        app.state.models = models if models is not None else serve_in_threads(settings, metrics)
        for loaded in app.state.models.values():
            loaded.batcher.start()
        app.state.status = "ok"
        log.info("serving models: %s", ", ".join(app.state.models))
        try:
            yield
        finally:
            app.state.status = "draining"
            # Every model's queue drains at once, under one deadline (the shutdown budget
            # counts TAGSERVE_DRAIN_TIMEOUT_S once, however many models there are).
            loaded_models = list(app.state.models.values())
            await asyncio.gather(
                *(m.batcher.close(settings.drain_timeout_s) for m in loaded_models)
            )
            for loaded in loaded_models:
                loaded.close()

    app = FastAPI(
        title="tagserve",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        **_NO_TELEMETRY,
    )
    app.state.settings = settings
    app.state.api_keys = settings.all_api_keys()
    app.state.metrics = metrics
    app.state.admission = Admission(
        settings.max_inflight,
        settings.max_queue,
        label=settings.default_model,
        hold_s=settings.overload_hold_s,
    )
    app.state.status = "starting"
    app.state.models = {}
    app.state.generation = 0  # of the models: one more after each reload (SIGHUP)
    handlers.install(app)
    app.include_router(router)
    app.include_router(labelstudio_router)  # Label Studio ML backend: /labelstudio
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    async def demo_page() -> FileResponse:
        """The demo page (plain HTML, CSS and JS served by the app)."""
        return FileResponse(STATIC_DIR / "index.html")

    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"]
        )
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestMetrics, metrics=metrics)
    return app


async def swap_models(app: FastAPI, models: dict[str, LoadedModel], generation: int) -> None:
    """Serve ``models`` from now on (on the event loop, after a reload). New batchers start
    first, then the one dict is replaced: a request looks its model up and queues on it in
    one step, so each request lands on the old model or the new one, never on a closed one.
    Then the models no longer served finish what is queued on them and are closed."""
    current: dict[str, LoadedModel] = app.state.models
    serving, staying = {id(m) for m in current.values()}, {id(m) for m in models.values()}
    for model in models.values():
        if id(model) not in serving:
            model.batcher.start()
    app.state.models, app.state.generation = models, generation
    retired = [m for m in current.values() if id(m) not in staying]
    drain_s = app.state.settings.drain_timeout_s
    await asyncio.gather(*(m.batcher.close(drain_s) for m in retired))
    for model in retired:
        model.close()
