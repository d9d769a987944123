"""``POST /tag`` without FastAPI's per-request machinery, for the requests that need none.

FastAPI's dependency solving, body parsing and route wrapping cost the HTTP process about as
much CPU per ``/tag`` request as all the work of tagging it (tokenizing, batching, building
the response). This raw ASGI route is put in front of the FastAPI route: it parses the body
with pydantic's JSON parser straight into :class:`TagRequest` and runs the same
:func:`~tagserve.service.api.routes.tag_payload`. Anything unusual (a body that does not
validate, an API key to check that does not match, a content type that is not JSON) is
handed, body and all, to the FastAPI route, so every error keeps its exact answer. The
OpenAPI page is generated from the FastAPI route, which stays declared.
"""

from __future__ import annotations

from pydantic import ValidationError
from starlette.routing import Match, Route
from starlette.types import Receive, Scope, Send

from tagserve.service.api.auth import key_matches
from tagserve.service.api.middleware import BODY_KEY
from tagserve.service.api.routes import tag_payload
from tagserve.service.api.schemas import TagRequest

# Set in the scope of a request this route hands on, so that routing passes it by.
_DECLINED = "tagserve.fast_tag_declined"
_JSON = (b"content-type", b"application/json")


class FastTagRoute(Route):
    """``POST /tag`` by :class:`FastTag`, first among the app's routes; a request it hands
    on is routed again without it, to the FastAPI route."""

    def __init__(self) -> None:
        super().__init__("/tag", FastTag(), methods=["POST"])

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope.get(_DECLINED):
            return Match.NONE, {}
        return super().matches(scope)


class FastTag:
    """The raw ASGI app behind :class:`FastTagRoute`."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The body, read and size-checked by the BodyLimit middleware, whose ``receive`` still
        # replays it to whoever reads it next.
        body = scope.get(BODY_KEY)
        request = None if body is None else self._parse(scope, body)
        if request is None:
            await scope["app"].router({**scope, _DECLINED: True}, receive, send)
            return
        app = scope["app"]
        payload = await tag_payload(request, app.state.models, app.state.settings)
        # The same headers as the FastAPI route's Response(media_type="application/json").
        headers = [(b"content-length", str(len(payload)).encode()), _JSON]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    def _parse(self, scope: Scope, body: bytes) -> TagRequest | None:
        """The request, or None when the FastAPI route should answer it."""
        content_type = b""
        authorization = b""
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value
            elif name == b"authorization":
                authorization = value
        if not content_type.startswith(b"application/json"):
            return None
        keys: list[str] = scope["app"].state.api_keys
        if keys:
            scheme, _, token = authorization.decode("latin-1").partition(" ")
            if scheme.lower() != "bearer" or not key_matches(token.strip(), keys):
                return None
        try:
            return TagRequest.model_validate_json(body)
        except ValidationError:
            return None
