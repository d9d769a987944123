"""tagserve.client: the retry and error rules against a scripted transport (fast), then the
sync and async clients against a real ``tagserve serve`` with API keys (slow)."""

from __future__ import annotations

import copy
import email.utils
import importlib
import json
import random
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tagserve.client import (
    AsyncTagserveClient,
    Entity,
    Health,
    Intent,
    IntentChoice,
    Models,
    Result,
    TagResponse,
    TagserveClient,
    TagserveError,
    Token,
)
from tagserve.model.artifact import save
from tests.conftest import ENTITY_TYPES, make_bundle
from tests.live_server import LiveServer, start_server

KEY = "k1"
TAGGED: dict[str, Any] = {
    "model": {"name": "ner", "version": "1.0.0"},
    "results": [
        {
            "text": "Harry Potter",
            "tokens": [
                {"text": "Harry", "start": 0, "end": 5, "tag": "B-PER", "score": 0.99},
                {"text": "Potter", "start": 6, "end": 12, "tag": "I-PER", "score": 0.98},
            ],
            "entities": [
                {"label": "PER", "text": "Harry Potter", "start": 0, "end": 12, "score": 0.98}
            ],
        }
    ],
}
BUSY = {"detail": "model 'ner' is at capacity (9 sentences queued, limit 8, TAGSERVE_MAX_QUEUE)"}


def scripted(*answers: httpx.Response) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    """A transport that gives ``answers`` in order (the last one again when they run out)."""
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answers[min(len(seen), len(answers)) - 1]

    return httpx.MockTransport(handle), seen


def busy(retry_after: str | None = "1") -> httpx.Response:
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    return httpx.Response(503, json=BUSY, headers=headers)


def ok() -> httpx.Response:
    return httpx.Response(200, json=TAGGED)


class Bound(random.Random):
    """A jitter source that always draws one end of the range: the low end (no jitter, so a
    wait is exactly the server's Retry-After) or, with ``high=True``, the cap."""

    def __init__(self, high: bool = False) -> None:
        super().__init__(0)
        self.high = high

    def uniform(self, a: float, b: float) -> float:
        return b if self.high else a


def sync_client(
    transport: httpx.MockTransport, waits: list[float], **options: Any
) -> TagserveClient:
    """A client over ``transport`` whose sleeps are recorded in ``waits`` instead of slept
    (and without jitter unless ``rng=`` says otherwise)."""
    options.setdefault("rng", Bound())
    return TagserveClient(
        "http://tagserve.test", transport=transport, sleep=waits.append, **options
    )


# ---- fast: retries, errors, headers ----


def test_503_is_retried_after_retry_after() -> None:
    transport, seen = scripted(busy("1"), busy("1"), ok())
    waits: list[float] = []
    with sync_client(transport, waits) as client:
        response = client.tag(text="Harry Potter")
    assert len(seen) == 3, "two 503s, then the answer"
    assert waits == pytest.approx([1.0, 1.0])
    assert response.results[0].entities == (Entity("PER", "Harry Potter", 0, 12, 0.98),)
    assert all(request.method == "POST" and request.url.path == "/tag" for request in seen)


async def test_async_503_is_retried_after_retry_after() -> None:
    transport, seen = scripted(busy("1"), busy("1"), ok())
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    async with AsyncTagserveClient(
        "http://tagserve.test", transport=transport, sleep=sleep, rng=Bound()
    ) as client:
        response = await client.tag(texts=["Harry Potter"])
    assert len(seen) == 3
    assert waits == pytest.approx([1.0, 1.0])
    assert response.model_name == "ner"


def test_retries_stop_after_max_retries_with_the_503() -> None:
    transport, seen = scripted(busy("1"))
    waits: list[float] = []
    with sync_client(transport, waits) as client, pytest.raises(TagserveError) as caught:
        client.tag(text="Harry")
    assert len(seen) == 4, "one try and 3 retries"
    assert waits == pytest.approx([1.0, 1.0, 1.0])
    assert caught.value.status == 503
    assert caught.value.detail == BUSY["detail"]
    assert caught.value.retry_after == 1.0


def test_retries_stop_before_the_wait_budget_is_spent() -> None:
    transport, seen = scripted(busy("6"))
    waits: list[float] = []
    with sync_client(transport, waits) as client, pytest.raises(TagserveError):
        client.tag(text="Harry")
    assert waits == [6.0], "a second 6 s wait would pass the 10 s budget"
    assert len(seen) == 2


def test_retry_limits_are_configurable() -> None:
    transport, seen = scripted(busy("1"))
    waits: list[float] = []
    with (
        sync_client(transport, waits, max_retries=0) as client,
        pytest.raises(TagserveError),
    ):
        client.tag(text="Harry")
    assert (len(seen), waits) == (1, [])
    transport, seen = scripted(busy("5"), busy("5"), ok())
    with sync_client(transport, waits, max_retries=5, max_retry_wait_s=20) as client:
        client.tag(text="Harry")
    assert waits == [5.0, 5.0]


def test_retry_after_a_date_or_unreadable() -> None:
    past = email.utils.formatdate(time.time() - 60, usegmt=True)
    transport, _ = scripted(busy(past), busy("soon"), ok())
    waits: list[float] = []
    with sync_client(transport, waits) as client:
        client.tag(text="Harry")
    assert waits == [0.0, 1.0], "a date in the past: at once; unreadable: 1 s"


TIMED_OUT = {
    "detail": "model 'ner' did not answer this request within 30 s; it is not retried",
    "code": "model_timeout",
}


def test_a_503_without_retry_after_is_final_and_names_its_code() -> None:
    # The server's answer for a request that alone hung a model worker: replaying it would
    # hang the next worker, so the client must raise it at once.
    transport, seen = scripted(httpx.Response(503, json=TIMED_OUT), ok())
    waits: list[float] = []
    with sync_client(transport, waits) as client, pytest.raises(TagserveError) as caught:
        client.tag(text="Harry")
    assert (len(seen), waits) == (1, [])
    error = caught.value
    assert (error.status, error.code, error.retry_after) == (503, "model_timeout", None)
    assert error.detail == TIMED_OUT["detail"]
    assert "model_timeout" in str(error)


async def test_async_a_503_without_retry_after_is_final() -> None:
    transport, seen = scripted(httpx.Response(503, json=TIMED_OUT), ok())
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    async with AsyncTagserveClient(transport=transport, sleep=sleep) as client:
        with pytest.raises(TagserveError) as caught:
            await client.tag(text="Harry")
    assert (len(seen), waits, caught.value.code) == (1, [], "model_timeout")


def test_a_503_with_retry_after_and_a_code_is_still_retried() -> None:
    transport, seen = scripted(
        httpx.Response(503, json={**BUSY, "code": "queue_full"}, headers={"Retry-After": "1"}),
        ok(),
    )
    with sync_client(transport, []) as client:
        client.tag(text="Harry")
    assert len(seen) == 2


def test_errors_without_a_code_have_none() -> None:
    transport, _ = scripted(httpx.Response(422, json={"detail": "text: too long", "code": 7}))
    with sync_client(transport, []) as client, pytest.raises(TagserveError) as caught:
        client.tag(text="Harry")
    assert caught.value.code is None, "a code that is not a string is not a code"


def test_jitter_is_full_jitter_bounded_and_seedable() -> None:
    # Retry-After 0 leaves the jitter alone: the k-th wait is uniform(0, min(cap, base * 2**k)).
    transport, _ = scripted(busy("0"))
    options: dict[str, Any] = {
        "max_retries": 6,
        "max_retry_wait_s": 100.0,
        "backoff_s": 0.5,
        "max_backoff_s": 3.0,
    }
    runs: list[list[float]] = []
    for _ in range(2):
        waits: list[float] = []
        with (
            sync_client(transport, waits, rng=random.Random(7), **options) as client,
            pytest.raises(TagserveError),
        ):
            client.tag(text="Harry")
        runs.append(waits)
    caps = [min(3.0, 0.5 * 2**k) for k in range(6)]
    expected = random.Random(7)
    assert runs[0] == pytest.approx([expected.uniform(0.0, cap) for cap in caps])
    assert runs[0] == runs[1], "the same seed gives the same waits"
    assert all(0.0 <= wait <= cap for wait, cap in zip(runs[0], caps, strict=True))
    assert len(set(runs[0])) == len(runs[0]), "jittered, not a fixed schedule"


def test_unseeded_clients_do_not_retry_in_lockstep() -> None:
    firsts = []
    for _ in range(5):
        transport, _ = scripted(busy("1"), ok())
        waits: list[float] = []
        with TagserveClient(transport=transport, sleep=waits.append) as client:
            client.tag(text="Harry")
        assert 1.0 <= waits[0] <= 1.5, "Retry-After, plus at most backoff_s of jitter"
        firsts.append(waits[0])
    assert len(set(firsts)) > 1


def test_jitter_adds_to_retry_after_and_is_cut_to_the_budget() -> None:
    transport, seen = scripted(busy("2"))
    waits: list[float] = []
    with (
        sync_client(transport, waits, rng=Bound(high=True), max_retry_wait_s=8.0) as client,
        pytest.raises(TagserveError),
    ):
        client.tag(text="Harry")
    # 2 + 0.5, 2 + 1, then 2 + 2 is cut to the 2.5 s left of the 8 s budget.
    assert waits == pytest.approx([2.5, 3.0, 2.5])
    assert len(seen) == 4


def refused(failures: int) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    """A transport whose first ``failures`` connections are refused, then answers ok."""
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if len(seen) <= failures:
            raise httpx.ConnectError("connection refused", request=request)
        return ok()

    return httpx.MockTransport(handle), seen


def test_refused_connections_are_retried_with_jittered_backoff() -> None:
    transport, seen = refused(2)
    waits: list[float] = []
    with sync_client(transport, waits, rng=Bound(high=True)) as client:
        assert client.tag(text="Harry").model_name == "ner"
    assert len(seen) == 3
    assert waits == pytest.approx([0.5, 1.0]), "no Retry-After: the backoff cap alone"


async def test_async_refused_connections_are_retried_then_raised() -> None:
    transport, seen = refused(100)
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    async with AsyncTagserveClient(transport=transport, sleep=sleep) as client:
        with pytest.raises(httpx.ConnectError):
            await client.tag(text="Harry")
    assert len(seen) == 4 and len(waits) == 3


def test_a_read_timeout_is_not_retried() -> None:
    # The server may be working on it (or hung on it): repeating could hang another worker.
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        raise httpx.ReadTimeout("timed out", request=request)

    waits: list[float] = []
    with (
        sync_client(httpx.MockTransport(handle), waits) as client,
        pytest.raises(httpx.ReadTimeout),
    ):
        client.tag(text="Harry")
    assert (len(seen), waits) == (1, [])


def test_negative_backoff_is_refused() -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        TagserveClient(backoff_s=-1.0)


def test_the_default_sleep_really_waits() -> None:
    transport, seen = scripted(busy("0.2"), ok())
    started = time.monotonic()
    with TagserveClient("http://tagserve.test", transport=transport) as client:
        client.tag(text="Harry")
    assert time.monotonic() - started >= 0.2
    assert len(seen) == 2


@pytest.mark.parametrize(
    ("answer", "status", "detail"),
    [
        (
            httpx.Response(404, json={"detail": "model: unknown model 'x'"}),
            404,
            "model: unknown model 'x'",
        ),
        (httpx.Response(422, json={"detail": "text: too long"}), 422, "text: too long"),
        (httpx.Response(500, json={"detail": "internal error"}), 500, "internal error"),
        (httpx.Response(502, text="<html>Bad Gateway</html>"), 502, "<html>Bad Gateway</html>"),
    ],
)
def test_errors_carry_status_and_detail_and_are_not_retried(
    answer: httpx.Response, status: int, detail: str
) -> None:
    transport, seen = scripted(answer)
    waits: list[float] = []
    with sync_client(transport, waits) as client, pytest.raises(TagserveError) as caught:
        client.tag(text="Harry")
    assert (caught.value.status, caught.value.detail) == (status, detail)
    assert str(status) in str(caught.value)
    assert len(seen) == 1 and waits == []


def test_api_key_is_sent_as_bearer_only_when_given() -> None:
    transport, seen = scripted(ok())
    with sync_client(transport, [], api_key=KEY) as client:
        client.tag(text="Harry")
    with sync_client(transport, []) as client:
        client.tag(text="Harry")
    assert seen[0].headers["Authorization"] == f"Bearer {KEY}"
    assert "Authorization" not in seen[1].headers


def test_request_body_and_one_input_only() -> None:
    transport, seen = scripted(ok())
    with sync_client(transport, []) as client:
        client.tag(tokens=[["Harry", "Potter"]], model="slots")
        with pytest.raises(ValueError, match="exactly one"):
            client.tag()
        with pytest.raises(ValueError, match="exactly one"):
            client.tag(text="a", texts=["b"])
    assert len(seen) == 1
    assert json.loads(seen[0].read()) == {"tokens": [["Harry", "Potter"]], "model": "slots"}


def test_fields_the_service_adds_later_are_ignored() -> None:
    payload = copy.deepcopy(TAGGED)
    payload["results"][0]["intent"] = {"label": "atis_flight", "score": 0.9}
    payload["results"][0]["tokens"][0]["extra"] = 1
    payload["results"][0]["entities"][0]["extra"] = 1
    transport, _ = scripted(httpx.Response(200, json=payload))
    with sync_client(transport, []) as client:
        response = client.tag(text="Harry Potter")
    assert response.results[0].tokens[0] == Token("Harry", 0, 5, "B-PER", 0.99)
    assert response.results[0].entities[0] == Entity("PER", "Harry Potter", 0, 12, 0.98)


def test_closed_client_sends_nothing() -> None:
    transport, seen = scripted(ok())
    client = sync_client(transport, [])
    client.close()
    with pytest.raises(RuntimeError):
        client.tag(text="Harry")
    assert seen == []


def test_without_httpx_the_import_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "httpx", None)  # import httpx now raises ImportError
    monkeypatch.delitem(sys.modules, "tagserve.client")
    with pytest.raises(ImportError, match=r"pip install 'tagserve\[client\]'") as caught:
        importlib.import_module("tagserve.client")
    assert "pip install ./client" in str(caught.value), "and names the light distribution"


# ---- slow: a real server (the tiny model, API key k1) ----


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    models_dir: Path = tmp_path_factory.mktemp("models")
    save(make_bundle(), models_dir / "tiny")
    live = start_server(models_dir, default_model="tiny", api_keys=KEY)
    yield live
    live.stop()


TEXT = "Harry Potter and Hermione Granger"


def check_tagged(response: TagResponse, texts: list[str]) -> None:
    assert isinstance(response, TagResponse)
    assert (response.model_name, response.model_version) == ("tiny", "0.0.1")
    assert [result.text for result in response.results] == texts
    for result in response.results:
        assert isinstance(result, Result)
        assert [t.text for t in result.tokens] == result.text.split()
        for token in result.tokens:
            assert isinstance(token, Token)
            assert result.text[token.start : token.end] == token.text
            assert token.tag == "O" or token.tag[2:] in ENTITY_TYPES
            assert isinstance(token.score, float) and 0.0 <= token.score <= 1.0
        for entity in result.entities:
            assert isinstance(entity, Entity)
            assert entity.label in ENTITY_TYPES
            assert result.text[entity.start : entity.end] == entity.text
    with pytest.raises(AttributeError):
        response.model_name = "changed"  # type: ignore[misc]  # frozen


@pytest.mark.slow
def test_sync_client_against_the_server(server: LiveServer) -> None:
    with TagserveClient(server.url, api_key=KEY) as client:
        check_tagged(client.tag(text=TEXT), [TEXT])
        check_tagged(client.tag(texts=[TEXT, "the"], model="tiny"), [TEXT, "the"])
        check_tagged(client.tag(tokens=[["Harry", "Potter"]]), ["Harry Potter"])
        models = client.models()
        assert isinstance(models, Models)
        assert models.default == "tiny"
        assert [m.name for m in models.models] == ["tiny"]
        assert sorted(models.models[0].entity_types) == ENTITY_TYPES
        assert client.health() == Health(ok=True, status="ok")
        with pytest.raises(TagserveError) as caught:
            client.tag(text=TEXT, model="medical")
        assert caught.value.status == 404
        assert "unknown model 'medical'" in caught.value.detail


@pytest.mark.slow
async def test_async_client_against_the_server(server: LiveServer) -> None:
    async with AsyncTagserveClient(server.url, api_key=KEY) as client:
        check_tagged(await client.tag(text=TEXT), [TEXT])
        check_tagged(await client.tag(texts=[TEXT]), [TEXT])
        assert (await client.models()).default == "tiny"
        assert await client.health() == Health(ok=True, status="ok")
        with pytest.raises(TagserveError) as caught:
            await client.tag(texts=["x" * 100_001])
        assert caught.value.status == 422
        assert "TAGSERVE_MAX_TEXT_CHARS" in caught.value.detail


@pytest.mark.slow
@pytest.mark.parametrize("api_key", [None, "wrong"], ids=["no key", "wrong key"])
def test_a_missing_or_wrong_key_is_a_401(server: LiveServer, api_key: str | None) -> None:
    with TagserveClient(server.url, api_key=api_key) as client:
        for call in (lambda: client.tag(text=TEXT), client.models):
            with pytest.raises(TagserveError) as caught:
                call()
            assert caught.value.status == 401
            assert "API key" in caught.value.detail
        assert client.health().ok, "/health stays open"


def test_the_intent_and_its_alternatives_are_typed() -> None:
    payload = {
        "model": {"name": "slots", "version": "2.0.0"},
        "results": [
            {
                "text": "fly to denver",
                "tokens": [],
                "entities": [],
                "intent": {
                    "label": "atis_flight",
                    "score": 0.9,
                    "alternatives": [
                        {"label": "atis_flight", "score": 0.9},
                        {"label": "atis_airfare", "score": 0.05},
                    ],
                },
            },
            {"text": "", "tokens": [], "entities": [], "intent": None},
        ],
    }
    sent: list[dict[str, object]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        return httpx.Response(200, json=payload)

    with TagserveClient(transport=httpx.MockTransport(answer)) as client:
        response = client.tag(texts=["fly to denver", ""], model="slots", intent_top_k=2)
    assert sent == [{"texts": ["fly to denver", ""], "model": "slots", "intent_top_k": 2}]
    first, empty = response.results
    assert first.intent == Intent(
        "atis_flight",
        0.9,
        (IntentChoice("atis_flight", 0.9), IntentChoice("atis_airfare", 0.05)),
    )
    assert empty.intent is None
