"""HTTP routes: POST /tag (:mod:`tagserve.service.api.tag_route`), GET /models, /health,
/livez, /metrics, and the offline docs page."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from tagserve.service.api.auth import require_api_key
from tagserve.service.api.schemas import (
    ErrorResponse,
    HealthResponse,
    ModelsResponse,
)
from tagserve.service.api.tag_route import route_options
from tagserve.service.inference.registry import LoadedModel
from tagserve.service.settings import Settings

router = APIRouter()
router.add_api_route(**route_options())


# Dependencies are ``async``: FastAPI runs plain ``def`` ones in a thread pool, a thread hop
# per request that cost a fifth of the event loop's time under load.
async def get_models(request: Request) -> dict[str, LoadedModel]:
    """The loaded models (overridable in tests)."""
    models: dict[str, LoadedModel] = request.app.state.models
    return models


async def get_app_settings(request: Request) -> Settings:
    """The settings this app was built with."""
    settings: Settings = request.app.state.settings
    return settings


Models = Annotated[dict[str, LoadedModel], Depends(get_models)]
AppSettings = Annotated[Settings, Depends(get_app_settings)]


GENERATION_HEADER = "X-Tagserve-Models-Generation"


@router.get(
    "/models",
    response_model=ModelsResponse,
    summary="The loaded models",
    dependencies=[Depends(require_api_key)],
    responses={
        200: {
            "headers": {
                GENERATION_HEADER: {
                    "description": "0 at start-up, one more after each reload of the models "
                    "folder (SIGHUP to tagserve serve) this HTTP worker has applied",
                    "schema": {"type": "integer"},
                }
            }
        },
        401: {"model": ErrorResponse, "description": "API key missing or wrong"},
    },
)
async def list_models(
    request: Request, response: Response, models: Models, settings: AppSettings
) -> dict[str, Any]:
    """Name, version, labels, data set and test scores of each loaded model."""
    response.headers[GENERATION_HEADER] = str(request.app.state.generation)
    return {"default": settings.default_model, "models": [m.describe() for m in models.values()]}


@router.get(
    "/health",
    response_model=HealthResponse,
    responses={
        503: {"model": HealthResponse, "description": "starting, draining or a model is down"}
    },
    summary="Readiness",
)
async def health(request: Request) -> JSONResponse:
    """200 once the models are loaded; 503 before that, while draining for shutdown, and
    while a model has no live worker process (one that died is replaced automatically)."""
    status = request.app.state.status
    if status == "ok":
        down = [name for name, m in request.app.state.models.items() if not m.worker_alive()]
        if down:
            status = f"model worker down: {', '.join(down)}"
    return JSONResponse({"status": status}, status_code=200 if status == "ok" else 503)


@router.get(
    "/livez",
    response_model=HealthResponse,
    summary="Liveness",
)
async def livez() -> JSONResponse:
    """200 whenever this process's event loop runs, also while starting and draining (for a
    liveness probe: restart the container only when it cannot answer at all). Readiness is
    ``/health``."""
    return JSONResponse({"status": "alive"})


@router.get(
    "/metrics",
    dependencies=[Depends(require_api_key)],
    response_class=Response,
    summary="Prometheus metrics",
    responses={
        200: {
            "content": {
                "text/plain": {"example": 'tagserve_requests_total{route="/tag",status="200"} 3.0'}
            }
        },
        401: {"model": ErrorResponse, "description": "API key missing or wrong"},
    },
)
async def metrics(request: Request) -> Response:
    """Requests by route and status, latency and batch-size histograms, queue depth."""
    return Response(
        generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST
    )


@router.get("/docs", include_in_schema=False)
async def docs() -> HTMLResponse:
    """Swagger UI from the app's own static files: the page works with no internet."""
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="tagserve API",
        swagger_js_url="/static/swagger/swagger-ui-bundle.js",
        swagger_css_url="/static/swagger/swagger-ui.css",
        swagger_favicon_url="/static/swagger/favicon-32x32.png",
    )
