"""Optional API keys: with ``TAGSERVE_API_KEYS`` set, /tag, /models and /metrics need
``Authorization: Bearer KEY``. Keys are compared in constant time and never logged."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from tagserve.service.errors import Unauthorized

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


async def require_api_key(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    """Let the request through when the server has no keys or the bearer token is one."""
    keys: list[str] = request.app.state.api_keys
    if not keys:
        return
    if credentials is None:
        raise Unauthorized("this server needs an API key: send Authorization: Bearer KEY")
    if not key_matches(credentials.credentials, keys):
        raise Unauthorized("the API key is not valid for this server")
