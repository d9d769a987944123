"""Every error becomes ``{"detail": "..."}`` naming the field and the limit; never a traceback."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from tagserve.service.errors import (
    LimitExceeded,
    ModelFailure,
    Overloaded,
    ShuttingDown,
    Unauthorized,
    UnknownModel,
    WorkerUnavailable,
)

log = logging.getLogger(__name__)


def describe_validation(errors: list[Any]) -> tuple[int, str]:
    """Status and one readable sentence for pydantic's error list."""
    fallback = {"type": "", "loc": (), "msg": "invalid request"}
    first: dict[str, Any] = errors[0] if errors else fallback
    if first.get("type") == "json_invalid":
        return (
            400,
            f"request body is not valid JSON: {first.get('ctx', {}).get('error', first['msg'])}",
        )
    parts = []
    for error in errors[:3]:
        location = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "body"
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{location}: {message}")
    more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
    return 422, "; ".join(parts) + more


def install(app: FastAPI) -> None:
    """Register the handlers on ``app``."""

    @app.exception_handler(RequestValidationError)
    async def validation(_: Request, error: RequestValidationError) -> JSONResponse:
        status, detail = describe_validation(list(error.errors()))
        return JSONResponse({"detail": detail}, status_code=status)

    @app.exception_handler(LimitExceeded)
    async def limit(_: Request, error: LimitExceeded) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=422)

    @app.exception_handler(UnknownModel)
    async def unknown_model(_: Request, error: UnknownModel) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=404)

    @app.exception_handler(Overloaded)
    async def overloaded(request: Request, error: Overloaded) -> JSONResponse:
        request.app.state.metrics.rejected.labels(model=error.model).inc()
        return JSONResponse(
            {"detail": str(error)}, status_code=503, headers={"Retry-After": str(error.retry_after)}
        )

    @app.exception_handler(ShuttingDown)
    async def shutting_down(_: Request, error: ShuttingDown) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=503, headers={"Retry-After": "5"})

    @app.exception_handler(Unauthorized)
    async def unauthorized(_: Request, error: Unauthorized) -> JSONResponse:
        return JSONResponse(
            {"detail": str(error)},
            status_code=401,
            headers={"WWW-Authenticate": 'Bearer realm="tagserve"'},
        )

    @app.exception_handler(WorkerUnavailable)
    async def worker_unavailable(_: Request, error: WorkerUnavailable) -> JSONResponse:
        return JSONResponse(
            {"detail": str(error)}, status_code=503, headers={"Retry-After": str(error.retry_after)}
        )

    @app.exception_handler(ModelFailure)
    async def model_failure(_: Request, error: ModelFailure) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=500)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, error: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            {"detail": str(error.detail)}, status_code=error.status_code, headers=error.headers
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unhandled error on %s", request.url.path)
        return JSONResponse({"detail": "internal error"}, status_code=500)
