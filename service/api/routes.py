"""HTTP routes: POST /tag, GET /models, GET /health, GET /metrics, and the offline docs page."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request, Response
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from tagserve.service.api.auth import require_api_key
from tagserve.service.api.schemas import (
    ErrorResponse,
    HealthResponse,
    ModelsResponse,
    TagRequest,
    TagResponse,
)
from tagserve.service.errors import LimitExceeded, UnknownModel
from tagserve.service.inference.registry import LoadedModel
from tagserve.service.settings import Settings
from tagserve.text.pipeline import TextPlan, build_results, model_inputs, plan_text, plan_tokens

router = APIRouter()


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

TAG_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "the body is not valid JSON"},
    401: {"model": ErrorResponse, "description": "API key missing or wrong (TAGSERVE_API_KEYS)"},
    404: {
        "model": ErrorResponse,
        "description": "unknown model; the message lists the loaded ones",
    },
    413: {"model": ErrorResponse, "description": "the body is larger than TAGSERVE_MAX_BODY_BYTES"},
    422: {"model": ErrorResponse, "description": "a field has the wrong type or is over its limit"},
    503: {"model": ErrorResponse, "description": "queue full or shutting down; see Retry-After"},
}


@router.post(
    "/tag",
    dependencies=[Depends(require_api_key)],
    response_model=TagResponse,
    responses=TAG_ERRORS,
    summary="Tag raw or pre-tokenized text",
)
async def tag(body: TagRequest, models: Models, settings: AppSettings) -> Response:
    """Tokens with offsets, IOB2 tags and confidences, and the entities they form.

    An empty or whitespace-only text gives a result with no tokens. Long texts are split into
    sentences; offsets always refer to the text as sent.
    """
    return Response(await tag_payload(body, models, settings), media_type="application/json")


async def tag_payload(
    body: TagRequest, models: dict[str, LoadedModel], settings: Settings
) -> bytes:
    """The work of ``POST /tag`` once the body is valid, as the JSON response body (shared
    with the lean route, :mod:`tagserve.service.api.fast_tag`)."""
    name = body.model or settings.default_model
    loaded = models.get(name)
    if loaded is None:
        raise UnknownModel(name, sorted(models))
    bundle = loaded.bundle
    if body.intent_top_k is not None and body.intent_top_k > len(bundle.intents):
        raise LimitExceeded(
            "intent_top_k",
            f"{body.intent_top_k} exceeds the {len(bundle.intents)} intents model {name!r} has"
            if bundle.intents
            else f"model {name!r} has no intent head",
        )
    plans = make_plans(body, loaded, settings)
    tagged = await loaded.batcher.submit(model_inputs(plans, bundle.card.tokenizer))
    results = build_results(
        plans, tagged, bundle.labels.scheme, bool(bundle.intents), body.intent_top_k
    )
    payload = {"model": {"name": loaded.name, "version": bundle.card.version}, "results": results}
    return orjson.dumps(payload)


def make_plans(body: TagRequest, loaded: LoadedModel, settings: Settings) -> list[TextPlan]:
    """Check every limit, then tokenize; nothing reaches the model before this passes."""
    limit_note = f"the limit of {settings.max_texts} per request (TAGSERVE_MAX_TEXTS)"
    if body.text is not None:
        inputs = [("text", body.text)]
    elif body.texts is not None:
        if len(body.texts) > settings.max_texts:
            raise LimitExceeded("texts", f"{len(body.texts)} texts exceed {limit_note}")
        inputs = [(f"texts[{i}]", text) for i, text in enumerate(body.texts)]
    else:
        assert body.tokens is not None
        if len(body.tokens) > settings.max_texts:
            raise LimitExceeded("tokens", f"{len(body.tokens)} token lists exceed {limit_note}")
        return _token_plans(body.tokens, settings)
    for field, text in inputs:
        if len(text) > settings.max_text_chars:
            raise LimitExceeded(
                field,
                f"{len(text)} characters exceed the limit of {settings.max_text_chars} "
                "(TAGSERVE_MAX_TEXT_CHARS)",
            )
    tokenizer = loaded.bundle.card.tokenizer
    plans = [plan_text(text, tokenizer, settings.max_sentence_tokens) for _, text in inputs]
    _check_token_total(
        sum(len(s) for p in plans for s in p.sentences),
        inputs[0][0] if body.text else "texts",
        settings,
    )
    return plans


def _token_plans(token_lists: list[list[str]], settings: Settings) -> list[TextPlan]:
    for i, words in enumerate(token_lists):
        for j, word in enumerate(words):
            if not word or any(c.isspace() for c in word):
                raise LimitExceeded(
                    f"tokens[{i}][{j}]", "a token must be non-empty and contain no whitespace"
                )
        joined = sum(map(len, words)) + max(len(words) - 1, 0)
        if joined > settings.max_text_chars:
            raise LimitExceeded(
                f"tokens[{i}]",
                f"{joined} characters exceed the limit of {settings.max_text_chars} "
                "(TAGSERVE_MAX_TEXT_CHARS)",
            )
    _check_token_total(sum(map(len, token_lists)), "tokens", settings)
    return [plan_tokens(words, settings.max_sentence_tokens) for words in token_lists]


def _check_token_total(total: int, field: str, settings: Settings) -> None:
    if total > settings.max_tokens:
        raise LimitExceeded(
            field,
            f"{total} tokens exceed the limit of {settings.max_tokens} per request "
            "(TAGSERVE_MAX_TOKENS)",
        )


@router.get(
    "/models",
    response_model=ModelsResponse,
    summary="The loaded models",
    dependencies=[Depends(require_api_key)],
    responses={401: {"model": ErrorResponse, "description": "API key missing or wrong"}},
)
async def list_models(models: Models, settings: AppSettings) -> dict[str, Any]:
    """Name, version, labels, data set and test scores of each loaded model."""
    return {"default": settings.default_model, "models": [m.info() for m in models.values()]}


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
