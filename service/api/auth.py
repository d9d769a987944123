"""Optional API keys: with ``TAGSERVE_API_KEYS`` set, /tag, /models and /metrics need
``Authorization: Bearer KEY``; the Label Studio backend routes also take HTTP Basic with the
key as password (any user name), since that is what Label Studio sends. One function reads
the header for every route (two ``Authorization`` headers are refused, never read one way
here and another there); keys are compared in constant time and never logged."""

from __future__ import annotations

import binascii
import hmac
from base64 import b64decode
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


def check_key(headers: list[tuple[bytes, bytes]], keys: list[str], basic: bool = False) -> None:
    """Let the request through when the server has no keys or the bearer token is one of
    them (with ``basic``, also a Basic password); else :class:`Unauthorized` (or
    :class:`BadRequest` for two headers). Reads the raw ASGI headers, before anything reads
    the body."""
    if not keys:
        return
    values = [value for name, value in headers if name == b"authorization"]
    if len(values) > 1:
        raise BadRequest(f"{len(values)} Authorization headers; send exactly one")
    wanted = "Bearer KEY, or HTTP Basic with the key as password" if basic else "Bearer KEY"
    if not values:
        raise Unauthorized(f"this server needs an API key: send Authorization: {wanted}")
    scheme, _, token = values[0].decode("latin-1").partition(" ")
    if basic and scheme.lower() == "basic":
        token = _basic_password(token.strip()) or ""
    elif scheme.lower() != "bearer":
        token = ""
    if not token.strip():
        raise Unauthorized(f"the Authorization header must be: {wanted}")
    if not key_matches(token.strip(), keys):
        raise Unauthorized("the API key is not valid for this server")


def _basic_password(credentials: str) -> str | None:
    """The password of Basic credentials (base64 of ``user:password``, RFC 7617), or None."""
    try:
        decoded = b64decode(credentials, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    _, colon, password = decoded.partition(":")
    return password if colon else None


async def require_api_key(
    request: Request,
    _: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    """The FastAPI dependency of the protected GET routes."""
    check_key(request.scope["headers"], request.app.state.api_keys)


async def require_backend_key(request: Request) -> None:
    """The dependency of the Label Studio backend routes: the header, or HTTP Basic."""
    check_key(request.scope["headers"], request.app.state.api_keys, basic=True)
