"""Optional API keys: with ``TAGSERVE_API_KEYS`` set, /tag, /models and /metrics need
``Authorization: Bearer KEY``. One function reads the header for every route (two
``Authorization`` headers are refused, never read one way here and another there); keys are
compared in constant time and never logged."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from tagserve.service.errors import BadRequest, Unauthorized

# Declares the scheme on the OpenAPI page; the decision is check_key's alone.
bearer = HTTPBearer(
    auto_error=False,
    description="needed only when the server sets TAGSERVE_API_KEYS",
)


def key_matches(candidate: str, keys: list[str]) -> bool:
    """Whether ``candidate`` is one of ``keys``; every key is compared, in constant time."""
    given = candidate.encode()
    found = False
    for key in keys:
        found |= hmac.compare_digest(given, key.encode())
    return found


def check_key(headers: list[tuple[bytes, bytes]], keys: list[str]) -> None:
    """Let the request through when the server has no keys or the bearer token is one of
    them; else :class:`Unauthorized` (or :class:`BadRequest` for two headers). Reads the
    raw ASGI headers, before anything reads the body."""
    if not keys:
        return
    values = [value for name, value in headers if name == b"authorization"]
    if len(values) > 1:
        raise BadRequest(f"{len(values)} Authorization headers; send exactly one")
    if not values:
        raise Unauthorized("this server needs an API key: send Authorization: Bearer KEY")
    scheme, _, token = values[0].decode("latin-1").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("the Authorization header must be: Bearer KEY")
    if not key_matches(token.strip(), keys):
        raise Unauthorized("the API key is not valid for this server")


async def require_api_key(
    request: Request,
    _: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    """The FastAPI dependency of the protected GET routes."""
    check_key(request.scope["headers"], request.app.state.api_keys)
