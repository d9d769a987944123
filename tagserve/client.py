"""A Python client for tagserve's HTTP API: ``POST /tag``, ``GET /models`` and ``GET /health``.

It needs httpx only. Two ways to install it (README "Dependencies" says why):

- the light distribution ``tagserve-client`` (``client/`` in the repository: ``pip install
  ./client``, or ``bash scripts/install.sh client`` from the lock), for programs that only
  call a tagserve server: httpx and nothing else, no torch, FastAPI or pydantic. Import it as
  ``tagserve_client``;
- the ``client`` extra of the whole service (``pip install 'tagserve[client]'``), which
  imports the same module as ``tagserve.client``.

The code lives once, here: ``client/tagserve_client/__init__.py`` is a link to this file.
Importing it without httpx raises ImportError naming both ways.

    from tagserve_client import TagserveClient  # or: from tagserve.client import ...

    with TagserveClient("http://127.0.0.1:8000", api_key=None) as client:
        response = client.tag(texts=["fly from boston to denver"], model="slots")
        for result in response.results:
            print([(e.label, e.text) for e in result.entities])

``AsyncTagserveClient`` is the same with ``async with`` and ``await``. Each client holds one
httpx connection pool, so keep one client and reuse it (it is safe to share between threads,
or between tasks for the async one); ``close()`` (or leaving the ``with`` block) releases it.

Answers are frozen dataclasses (``TagResponse``, ``Result``, ``Token``, ``Entity``). Any status
other than 2xx raises ``TagserveError`` with the status, the service's ``detail`` message and
its machine-readable ``code`` when it sent one (``"model_timeout"``); network failures raise
httpx's own exceptions (``httpx.TransportError`` and subclasses).

Retries. Tagging has no side effects, so repeating a request is safe, but only two failures
are repeated, because only for them the server asked for it or never saw the request:

- a 503 that carries ``Retry-After`` (queue full, a model worker being replaced, shutting
  down). A 503 without it is final: the server sends that for a request it will not take
  again (``code: "model_timeout"``: that request alone hung a model worker), so replaying it
  would only hang the next worker;
- a connection that could not be opened (``httpx.ConnectError``, ``httpx.ConnectTimeout``):
  nothing was sent. A read timeout is not repeated, for the same reason as above.

Each wait is the server's ``Retry-After`` (0 for a connection error; 1 s when the header
cannot be read) plus a full jitter, uniform in ``[0, min(max_backoff_s, backoff_s *
2**retry)]``, so that clients turned away together do not all come back in the same instant.
At most ``max_retries`` retries (default 3) and ``max_retry_wait_s`` (default 10 s) of waiting
in all: a wait is cut to what is left of that budget, and when the server's own
``Retry-After`` does not fit, the answer is raised at once. ``max_retries=0`` turns retrying
off; ``rng=random.Random(seed)`` makes the jitter repeatable.
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

try:
    import httpx
except ImportError as error:
    raise ImportError(
        f"{__name__} needs httpx: install the light client (pip install ./client in a tagserve "
        "checkout, the tagserve-client distribution) or the service's extra: "
        "pip install 'tagserve[client]'"
    ) from error

__all__ = [
    "AsyncTagserveClient",
    "Entity",
    "Health",
    "Intent",
    "IntentChoice",
    "ModelInfo",
    "Models",
    "Result",
    "TagResponse",
    "TagserveClient",
    "TagserveError",
    "Token",
]

DEFAULT_URL = "http://127.0.0.1:8000"
# Wait before retrying a 503 whose Retry-After header cannot be read.
DEFAULT_RETRY_AFTER_S = 1.0
# Full jitter: the k-th retry (from 0) adds uniform(0, min(MAX_BACKOFF_S, BACKOFF_S * 2**k)).
DEFAULT_BACKOFF_S = 0.5
DEFAULT_MAX_BACKOFF_S = 8.0
# Failures after which the request surely never reached the server, so repeating it is safe.
_RETRIED_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout)


class TagserveError(Exception):
    """The service answered with an error status: ``status``, its ``detail`` message, its
    ``code`` (a stable name such as ``"model_timeout"``, for programs; None when the body has
    none) and the ``Retry-After`` seconds it sent (None when it sent none)."""

    def __init__(
        self,
        status: int,
        detail: str,
        retry_after: float | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(f"{status}: {detail}" + (f" ({code})" if code else ""))
        self.status = status
        self.detail = detail
        self.retry_after = retry_after
        self.code = code


@dataclass(frozen=True)
class Token:
    """One token: ``text[start:end]`` of the text sent (code-point offsets, end exclusive)."""

    text: str
    start: int
    end: int
    tag: str
    score: float


@dataclass(frozen=True)
class Entity:
    """An entity span; ``score`` is the lowest score of its tokens."""

    label: str
    text: str
    start: int
    end: int
    score: float


@dataclass(frozen=True)
class IntentChoice:
    """One intent and the model's probability for it."""

    label: str
    score: float


@dataclass(frozen=True)
class Intent:
    """The text's intent (models with an intent head only); ``alternatives`` holds the
    ``intent_top_k`` most likely ones when asked for, most likely first."""

    label: str
    score: float
    alternatives: tuple[IntentChoice, ...] = ()


@dataclass(frozen=True)
class Result:
    """The answer for one input text (or one token list); ``intent`` is None for a model
    without an intent head (and for an empty text)."""

    text: str
    tokens: tuple[Token, ...]
    entities: tuple[Entity, ...]
    intent: Intent | None = None


@dataclass(frozen=True)
class TagResponse:
    """The answer to one ``tag()`` call: one ``Result`` per input, in order."""

    model_name: str
    model_version: str
    results: tuple[Result, ...]


@dataclass(frozen=True)
class ModelInfo:
    """One loaded model, as ``GET /models`` describes it; ``intents`` are the intent head's
    labels (empty without a head). It comes last, with a default, so that code which built
    ``ModelInfo`` positionally before it existed still works."""

    name: str
    version: str
    dataset: str
    description: str
    scheme: str
    entity_types: tuple[str, ...]
    labels: tuple[str, ...]
    test_metrics: Mapping[str, Any] | None
    trained_at: str | None
    intents: tuple[str, ...] = ()
    precision: str = "float32"  # "int8" when the server quantizes it (TAGSERVE_PRECISION)


@dataclass(frozen=True)
class Models:
    """``GET /models``: the default model's name and every loaded model."""

    default: str
    models: tuple[ModelInfo, ...]


@dataclass(frozen=True)
class Health:
    """``GET /health``: ``ok`` is true on 200; ``status`` is ``ok``, ``starting``,
    ``draining`` or ``model worker down: NAME`` (a 503 here is an answer, not an error)."""

    ok: bool
    status: str


def _tag_body(
    text: str | None,
    texts: list[str] | None,
    tokens: list[list[str]] | None,
    model: str | None,
    intent_top_k: int | None = None,
) -> dict[str, Any]:
    given = {
        name: value
        for name, value in (("text", text), ("texts", texts), ("tokens", tokens))
        if value is not None
    }
    if len(given) != 1:
        raise ValueError(
            f"give exactly one of text=, texts= or tokens= (got {', '.join(given) or 'none'})"
        )
    body: dict[str, Any] = dict(given)
    if model is not None:
        body["model"] = model
    if intent_top_k is not None:
        body["intent_top_k"] = intent_top_k
    return body


# Fields the service may add later are ignored: each record is built from the keys it knows.
def _token(item: dict[str, Any]) -> Token:
    return Token(item["text"], item["start"], item["end"], item["tag"], item["score"])


def _entity(item: dict[str, Any]) -> Entity:
    return Entity(item["label"], item["text"], item["start"], item["end"], item["score"])


def _intent(item: dict[str, Any] | None) -> Intent | None:
    if item is None:
        return None
    choices = tuple(IntentChoice(c["label"], c["score"]) for c in item.get("alternatives") or [])
    return Intent(item["label"], item["score"], choices)


def _parse_tag(payload: dict[str, Any]) -> TagResponse:
    return TagResponse(
        model_name=payload["model"]["name"],
        model_version=payload["model"]["version"],
        results=tuple(
            Result(
                text=result["text"],
                tokens=tuple(map(_token, result["tokens"])),
                entities=tuple(map(_entity, result["entities"])),
                intent=_intent(result.get("intent")),
            )
            for result in payload["results"]
        ),
    )


def _parse_models(payload: dict[str, Any]) -> Models:
    return Models(
        default=payload["default"],
        models=tuple(
            ModelInfo(
                name=m["name"],
                version=m["version"],
                dataset=m["dataset"],
                description=m["description"],
                scheme=m["scheme"],
                entity_types=tuple(m["entity_types"]),
                labels=tuple(m["labels"]),
                test_metrics=m.get("test_metrics"),
                trained_at=m.get("trained_at"),
                # A server older than the intent heads sends no "intents".
                intents=tuple(m.get("intents") or ()),
                # A server older than int8 serving sends no "precision": float32.
                precision=m.get("precision") or "float32",
            )
            for m in payload["models"]
        ),
    )


def _parse_health(response: httpx.Response) -> Health:
    if response.status_code not in (200, 503):
        raise _error(response)
    return Health(ok=response.status_code == 200, status=str(response.json()["status"]))


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date), or None."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    if math.isnan(seconds):
        return None
    return max(seconds, 0.0)


def _error(response: httpx.Response) -> TagserveError:
    """The service's ``{"detail": ..., "code": ...}`` as an exception (the body text as the
    detail when it is not a JSON object, as from a proxy)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        body = {}
    detail = body.get("detail")
    if not isinstance(detail, str):
        detail = (
            str(detail) if detail is not None else (response.text[:500] or response.reason_phrase)
        )
    code = body.get("code")
    return TagserveError(
        response.status_code,
        detail,
        _retry_after(response),
        code if isinstance(code, str) else None,
    )


class _RetryPolicy:
    """When to repeat a request (the module docstring gives the rules): bounded in count and
    in total wait, each wait jittered so that clients turned away together spread out."""

    def __init__(
        self,
        max_retries: int,
        max_retry_wait_s: float,
        backoff_s: float,
        max_backoff_s: float,
        rng: random.Random | None,
    ) -> None:
        if min(max_retries, max_retry_wait_s, backoff_s, max_backoff_s) < 0:
            raise ValueError(
                "max_retries, max_retry_wait_s, backoff_s and max_backoff_s must not be negative"
            )
        self.max_retries = max_retries
        self.max_retry_wait_s = max_retry_wait_s
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        # One generator per client, seeded from the OS unless given: no lockstep across clients.
        self._rng = rng if rng is not None else random.Random()

    def jitter(self, retries: int) -> float:
        """Full jitter for the retry numbered ``retries`` (from 0): uniform in [0, cap]."""
        cap = min(self.max_backoff_s, self.backoff_s * 2.0 ** min(retries, 64))
        return self._rng.uniform(0.0, cap)

    def _delay(self, floor: float, retries: int, waited: float) -> float | None:
        """``floor`` plus jitter, cut to the budget left; None when ``floor`` does not fit."""
        left = self.max_retry_wait_s - waited
        if retries >= self.max_retries or floor > left:
            return None
        return min(floor + self.jitter(retries), left)

    def after_response(self, response: httpx.Response, retries: int, waited: float) -> float | None:
        """Seconds to wait before repeating after this answer, or None to raise it: only a 503
        that carries Retry-After is repeated (one without it is the server saying "not again")."""
        if response.status_code != 503 or "retry-after" not in response.headers:
            return None
        after = _retry_after(response)
        return self._delay(DEFAULT_RETRY_AFTER_S if after is None else after, retries, waited)

    def after_error(self, error: httpx.TransportError, retries: int, waited: float) -> float | None:
        """Seconds to wait before repeating after a network failure, or None to raise it: only
        when no connection was made (the server never saw the request)."""
        if not isinstance(error, _RETRIED_ERRORS):
            return None
        return self._delay(0.0, retries, waited)


def _headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


class TagserveClient:
    """A synchronous client with one connection pool (an ``httpx.Client``)."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        api_key: str | None = None,
        timeout: float = 30.0,
        max_retries: int = 3,
        max_retry_wait_s: float = 10.0,
        backoff_s: float = DEFAULT_BACKOFF_S,
        max_backoff_s: float = DEFAULT_MAX_BACKOFF_S,
        rng: random.Random | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._retry = _RetryPolicy(max_retries, max_retry_wait_s, backoff_s, max_backoff_s, rng)
        self._sleep = sleep
        self._http = httpx.Client(
            base_url=base_url, headers=_headers(api_key), timeout=timeout, transport=transport
        )

    def tag(
        self,
        *,
        text: str | None = None,
        texts: list[str] | None = None,
        tokens: list[list[str]] | None = None,
        model: str | None = None,
        intent_top_k: int | None = None,
    ) -> TagResponse:
        """Tag one ``text``, several ``texts`` or pre-tokenized ``tokens`` (exactly one);
        ``intent_top_k`` asks a model with an intent head for its k most likely intents."""
        body = _tag_body(text, texts, tokens, model, intent_top_k)
        return _parse_tag(self._send("POST", "/tag", body).json())

    def models(self) -> Models:
        """The loaded models and the default one. After rolling out a retrained model (copy
        the artifact in under a hidden name, rename it into place, ``kill -HUP`` the server:
        README, "Roll out a retrained model"), this is how to confirm it: the new version is
        listed once the server has logged ``reload N done``."""
        return _parse_models(self._send("GET", "/models").json())

    def health(self) -> Health:
        """Whether the server is ready (no retry: a 503 here is the answer)."""
        return _parse_health(self._http.get("/health"))

    def _send(self, method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        retries, waited = 0, 0.0
        while True:
            try:
                response = self._http.request(method, path, json=body)
            except httpx.TransportError as error:
                delay = self._retry.after_error(error, retries, waited)
                if delay is None:
                    raise
            else:
                if response.is_success:
                    return response
                delay = self._retry.after_response(response, retries, waited)
                if delay is None:
                    raise _error(response)
            self._sleep(delay)
            retries, waited = retries + 1, waited + delay

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class AsyncTagserveClient:
    """An asyncio client with one connection pool (an ``httpx.AsyncClient``)."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        api_key: str | None = None,
        timeout: float = 30.0,
        max_retries: int = 3,
        max_retry_wait_s: float = 10.0,
        backoff_s: float = DEFAULT_BACKOFF_S,
        max_backoff_s: float = DEFAULT_MAX_BACKOFF_S,
        rng: random.Random | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._retry = _RetryPolicy(max_retries, max_retry_wait_s, backoff_s, max_backoff_s, rng)
        self._sleep = sleep
        self._http = httpx.AsyncClient(
            base_url=base_url, headers=_headers(api_key), timeout=timeout, transport=transport
        )

    async def tag(
        self,
        *,
        text: str | None = None,
        texts: list[str] | None = None,
        tokens: list[list[str]] | None = None,
        model: str | None = None,
        intent_top_k: int | None = None,
    ) -> TagResponse:
        """Tag one ``text``, several ``texts`` or pre-tokenized ``tokens`` (exactly one);
        ``intent_top_k`` asks a model with an intent head for its k most likely intents."""
        body = _tag_body(text, texts, tokens, model, intent_top_k)
        return _parse_tag((await self._send("POST", "/tag", body)).json())

    async def models(self) -> Models:
        """The loaded models and the default one."""
        return _parse_models((await self._send("GET", "/models")).json())

    async def health(self) -> Health:
        """Whether the server is ready (no retry: a 503 here is the answer)."""
        return _parse_health(await self._http.get("/health"))

    async def _send(
        self, method: str, path: str, body: dict[str, Any] | None = None
    ) -> httpx.Response:
        retries, waited = 0, 0.0
        while True:
            try:
                response = await self._http.request(method, path, json=body)
            except httpx.TransportError as error:
                delay = self._retry.after_error(error, retries, waited)
                if delay is None:
                    raise
            else:
                if response.is_success:
                    return response
                delay = self._retry.after_response(response, retries, waited)
                if delay is None:
                    raise _error(response)
            await self._sleep(delay)
            retries, waited = retries + 1, waited + delay

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def close(self) -> None:
        """The same as ``aclose()``."""
        await self.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()
