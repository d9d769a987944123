"""Every error becomes ``{"detail": "..."}`` naming the field and the limit; never a traceback."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from tagserve.service.errors import (
    BadRequest,
    LimitExceeded,
    ModelFailure,
    ModelTimeout,
    Overloaded,
    ShuttingDown,
    Unauthorized,
    UnknownModel,
    UnsupportedMedia,
    WorkerUnavailable,
)
from tagserve.service.metrics import Metrics

log = logging.getLogger(__name__)
# pydantic's JSON parser (jiter) refuses arrays and objects nested deeper than this.
JSON_DEPTH_LIMIT = 200


def describe_validation(errors: list[Any]) -> tuple[int, str]:
    """Status and one readable sentence for pydantic's error list."""
    fallback = {"type": "", "loc": (), "msg": "invalid request"}
    first: dict[str, Any] = errors[0] if errors else fallback
    if first.get("type") == "json_invalid":
        reason = str(first.get("ctx", {}).get("error", first["msg"]))
        if reason.startswith("recursion limit exceeded"):
            reason = reason.replace(
                "recursion limit exceeded", f"nested deeper than {JSON_DEPTH_LIMIT} levels", 1
            )
        return 400, f"request body is not valid JSON: {reason}"
    parts = []
    for error in errors[:3]:
        location = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "body"
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{location}: {message}")
    more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
    return 422, "; ".join(parts) + more


# Each service exception, the status it is answered with, and whether the answer carries
# Retry-After (seconds) or WWW-Authenticate.
_STATUS: dict[type[Exception], int] = {
    BadRequest: 400,
    Unauthorized: 401,
    UnknownModel: 404,
    UnsupportedMedia: 415,
    LimitExceeded: 422,
    ModelFailure: 500,
    Overloaded: 503,
    ShuttingDown: 503,
    WorkerUnavailable: 503,
    ModelTimeout: 503,
}
ServiceError = tuple(_STATUS)


def answer_for(error: Exception, metrics: Metrics) -> tuple[int, dict[str, str], dict[str, str]]:
    """Status, JSON body and headers for one of the service's exceptions: the one mapping,
    used by the FastAPI handlers and the ``POST /tag`` route alike."""
    body = {"detail": str(error)}
    headers: dict[str, str] = {}
    if isinstance(error, Overloaded):
        metrics.rejected.labels(model=error.model).inc()
        headers["Retry-After"] = str(error.retry_after)
    elif isinstance(error, WorkerUnavailable):
        headers["Retry-After"] = str(error.retry_after)
    elif isinstance(error, ShuttingDown):
        headers["Retry-After"] = "5"
    elif isinstance(error, Unauthorized):
        headers["WWW-Authenticate"] = 'Bearer realm="tagserve"'
    elif isinstance(error, ModelTimeout):
        body["code"] = error.code  # and no Retry-After: it would hang the next worker too
    return _STATUS[type(error)], body, headers


def install(app: FastAPI) -> None:
    """Register the handlers on ``app``."""

    @app.exception_handler(RequestValidationError)
    async def validation(_: Request, error: RequestValidationError) -> JSONResponse:
        status, detail = describe_validation(list(error.errors()))
        return JSONResponse({"detail": detail}, status_code=status)

    async def service_error(request: Request, error: Exception) -> JSONResponse:
        status, body, headers = answer_for(error, request.app.state.metrics)
        return JSONResponse(body, status_code=status, headers=headers)

    for kind in ServiceError:
        app.add_exception_handler(kind, service_error)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, error: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            {"detail": str(error.detail)}, status_code=error.status_code, headers=error.headers
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unhandled error on %s", request.url.path)
        return JSONResponse({"detail": "internal error"}, status_code=500)
