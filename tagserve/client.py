"""A Python client for tagserve's HTTP API: ``POST /tag``, ``GET /models`` and ``GET /health``.

Needs httpx, which the service itself does not: install the ``client`` extra
(``pip install 'tagserve[client]'``). Importing this module without httpx raises ImportError
naming that extra.

    from tagserve.client import TagserveClient

    with TagserveClient("http://127.0.0.1:8000", api_key=None) as client:
        response = client.tag(texts=["fly from boston to denver"], model="slots")
        for result in response.results:
            print([(e.label, e.text) for e in result.entities])

``AsyncTagserveClient`` is the same with ``async with`` and ``await``. Each client holds one
httpx connection pool, so keep one client and reuse it (it is safe to share between threads,
or between tasks for the async one); ``close()`` (or leaving the ``with`` block) releases it.

Answers are frozen dataclasses (``TagResponse``, ``Result``, ``Token``, ``Entity``). Any status
other than 2xx raises ``TagserveError`` with the status and the service's ``detail`` message;
network failures raise httpx's own exceptions (``httpx.TransportError`` and subclasses).

A 503 (queue full, a model worker being replaced, shutting down) is retried: at most
``max_retries`` times (default 3), each after the ``Retry-After`` the server sent (1 s when
it sent none), and never past ``max_retry_wait_s`` (default 10 s) of waiting in total; when
the next wait would go past that budget the 503 is raised at once. Tagging has no side
effects, so repeating a ``POST /tag`` is safe. ``max_retries=0`` turns retrying off.
"""

from __future__ import annotations

import asyncio
import email.utils
import math
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
        "tagserve.client needs httpx, which the 'client' extra installs: "
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
# Wait before retrying a 503 that carries no (readable) Retry-After.
DEFAULT_RETRY_AFTER_S = 1.0


class TagserveError(Exception):
    """The service answered with an error status: ``status`` and its ``detail`` message."""

    def __init__(self, status: int, detail: str, retry_after: float | None = None) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail
        self.retry_after = retry_after


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
    """One loaded model, as ``GET /models`` describes it."""

    name: str
    version: str
    dataset: str
    description: str
    scheme: str
    entity_types: tuple[str, ...]
    labels: tuple[str, ...]
    test_metrics: Mapping[str, Any] | None
    trained_at: str | None


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
    """The service's ``{"detail": ...}`` as an exception (the body text if it is not JSON)."""
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    if not isinstance(detail, str):
        detail = (
            str(detail) if detail is not None else (response.text[:500] or response.reason_phrase)
        )
    return TagserveError(response.status_code, detail, _retry_after(response))


class _RetryPolicy:
    """When to repeat a request that got 503: bounded in count and in total wait."""

    def __init__(self, max_retries: int, max_retry_wait_s: float) -> None:
        if max_retries < 0 or max_retry_wait_s < 0:
            raise ValueError("max_retries and max_retry_wait_s must not be negative")
        self.max_retries = max_retries
        self.max_retry_wait_s = max_retry_wait_s

    def wait(self, response: httpx.Response, retries: int, waited: float) -> float | None:
        """Seconds to wait before the next try, or None to give up (raise this answer)."""
        if response.status_code != 503 or retries >= self.max_retries:
            return None
        delay = _retry_after(response)
        delay = DEFAULT_RETRY_AFTER_S if delay is None else delay
        if waited + delay > self.max_retry_wait_s:
            return None
        return delay


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
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._retry = _RetryPolicy(max_retries, max_retry_wait_s)
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
        """The loaded models and the default one."""
        return _parse_models(self._send("GET", "/models").json())

    def health(self) -> Health:
        """Whether the server is ready (no retry: a 503 here is the answer)."""
        return _parse_health(self._http.get("/health"))

    def _send(self, method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        retries, waited = 0, 0.0
        while True:
            response = self._http.request(method, path, json=body)
            if response.is_success:
                return response
            delay = self._retry.wait(response, retries, waited)
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
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._retry = _RetryPolicy(max_retries, max_retry_wait_s)
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
            response = await self._http.request(method, path, json=body)
            if response.is_success:
                return response
            delay = self._retry.wait(response, retries, waited)
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
