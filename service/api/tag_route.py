"""``POST /tag``: one route, declared to FastAPI for the OpenAPI page and run as plain ASGI.

FastAPI's dependency solving, body parsing and response wrapping cost the HTTP process
about as much CPU per ``/tag`` as all the work of tagging it. So :class:`TagRoute` is an
:class:`~fastapi.routing.APIRoute` (path, method, request and response schemas, security and
error answers all on the OpenAPI page) whose ASGI app is :func:`tag_asgi`: the key is
checked from the raw headers, the content type and encoding are checked, admission
(:mod:`~tagserve.service.api.admission`) refuses what cannot be queued, the body is parsed
by pydantic's JSON parser straight into :class:`TagRequest`, and every error is answered by
the one mapping of :mod:`tagserve.service.api.handlers`. Nothing else implements any of it.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import orjson
from fastapi import Depends
from fastapi.routing import APIRoute
from pydantic import ValidationError
from starlette.types import Receive, Scope, Send

from tagserve.service.api.admission import Admission
from tagserve.service.api.auth import check_key, require_api_key
from tagserve.service.api.handlers import ServiceError, answer_for, describe_validation
from tagserve.service.api.schemas import ErrorResponse, TagRequest, TagResponse
from tagserve.service.api.tagging import tag_payload
from tagserve.service.errors import BadRequest, UnsupportedMedia

log = logging.getLogger(__name__)
_JSON = (b"content-type", b"application/json")

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {
        "model": ErrorResponse,
        "description": "the body is not valid JSON (the message gives the position), not "
        "UTF-8 (the byte offset), or the request has two Authorization headers",
    },
    401: {"model": ErrorResponse, "description": "API key missing or wrong (TAGSERVE_API_KEYS)"},
    404: {
        "model": ErrorResponse,
        "description": "unknown model; the message lists the loaded ones",
    },
    413: {"model": ErrorResponse, "description": "the body is larger than TAGSERVE_MAX_BODY_BYTES"},
    415: {
        "model": ErrorResponse,
        "description": "a content type other than application/json, or a Content-Encoding",
    },
    422: {"model": ErrorResponse, "description": "a field has the wrong type or is over its limit"},
    503: {
        "model": ErrorResponse,
        "description": "queue full, shutting down or a model worker being replaced: retry after "
        "Retry-After. Without Retry-After (code model_timeout): this request alone hangs the "
        "model; do not retry it as it is",
    },
}


class TagRoute(APIRoute):
    """The declared route, served by :func:`tag_asgi` instead of FastAPI's request handler."""

    def __init__(self, path: str, endpoint: Any, **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        self.app = tag_asgi

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "POST":  # matched by path only: FastAPI answers the 405
            await super().handle(scope, receive, send)
            return
        await tag_asgi(scope, receive, send)


async def declared_tag(body: TagRequest) -> TagResponse:  # pragma: no cover - never called
    """Tokens with offsets, IOB2 tags and confidences, and the entities they form.

    An empty or whitespace-only text gives a result with no tokens. Long texts are split into
    sentences; offsets always refer to the text as sent.
    """
    raise NotImplementedError("served by tag_asgi")


def route_options() -> dict[str, Any]:
    """What ``APIRouter.add_api_route`` needs to declare ``POST /tag``."""
    return {
        "path": "/tag",
        "endpoint": declared_tag,
        "methods": ["POST"],
        "dependencies": [Depends(require_api_key)],
        "response_model": TagResponse,
        "responses": ERRORS,
        "summary": "Tag raw or pre-tokenized text",
        "route_class_override": TagRoute,
    }


async def tag_asgi(scope: Scope, receive: Receive, send: Send) -> None:
    """Serve one ``POST /tag``."""
    app = scope["app"]
    admission: Admission = app.state.admission
    admitted = False
    try:
        check_key(scope["headers"], app.state.api_keys)
        _check_media(scope["headers"])
        body = await _read_body(receive)  # already read (and bounded) by BodyLimit
        # Before any parsing: a refusal must cost what GET /health costs, not an answer.
        await admission.enter(len(body), app.state.models.values())
        admitted = True
        request = _parse(body)
        payload = await tag_payload(request, app.state.models, app.state.settings)
    except ServiceError as error:
        status, answer, headers = answer_for(error, app.state.metrics)
        await _send(send, status, orjson.dumps(answer), headers)
        return
    except _Invalid as invalid:
        await _send(send, invalid.status, orjson.dumps({"detail": invalid.detail}), {})
        return
    finally:
        if admitted:
            admission.release()
    await _send(send, 200, payload, {})


class _Invalid(Exception):
    """A body that pydantic refused: status and one sentence (400 or 422)."""

    def __init__(self, status: int, detail: str) -> None:
        self.status, self.detail = status, detail


def _check_media(headers: list[tuple[bytes, bytes]]) -> None:
    """JSON only, not compressed (no content type at all is read as JSON, as FastAPI does)."""
    for name, value in headers:
        if name == b"content-type":
            media = value.split(b";", 1)[0].strip().lower()
            if media != b"application/json" and not media.endswith(b"+json"):
                shown = value.decode("latin-1")[:100]
                raise UnsupportedMedia(
                    f"content-type {shown!r} is not supported: send application/json"
                )
        elif name == b"content-encoding" and value.strip().lower() != b"identity":
            shown = value.decode("latin-1")[:100]
            raise UnsupportedMedia(
                f"content-encoding {shown!r} is not supported: send the JSON body uncompressed"
            )


async def _read_body(receive: Receive) -> bytes:
    """The whole body (the BodyLimit middleware has already bounded its size)."""
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _parse(body: bytes) -> TagRequest:
    try:
        return TagRequest.model_validate_json(body)
    except ValidationError as error:
        errors = error.errors()
        if errors and errors[0].get("type") == "json_invalid":
            _refuse_bad_utf8(body)
            if b"\\u" in body:  # an escape pydantic's parser refused: a lone surrogate?
                errors = _python_reading(body) or errors
        status, detail = describe_validation(list(errors))
        raise _Invalid(status, detail) from None


def _python_reading(body: bytes) -> list[Any] | None:
    """Python's JSON parser reads what pydantic's refuses outright, a lone surrogate escape
    (``"\\ud800"``): validating that says which field holds it. Only on the error path."""
    try:
        TagRequest.model_validate(json.loads(body))
    except ValidationError as error:
        return list(error.errors())
    except ValueError:
        return None
    return None


def _refuse_bad_utf8(body: bytes) -> None:
    """Name the byte offset when the JSON is invalid because the bytes are not UTF-8."""
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise BadRequest(
            f"request body is not valid UTF-8: byte 0x{body[error.start]:02x} at offset "
            f"{error.start}"
        ) from None


async def _send(send: Send, status: int, body: bytes, headers: dict[str, str]) -> None:
    raw = [(b"content-length", str(len(body)).encode()), _JSON]
    raw += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
