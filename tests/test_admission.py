"""Admission before work: a full HTTP worker refuses ``POST /tag`` with 503 + Retry-After
before parsing the body (the key is still checked first); other requests are unaffected."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from tagserve.service.api.admission import BYTES_PER_SENTENCE, Admission, estimate_sentences
from tagserve.service.errors import Overloaded
from tagserve.service.settings import Settings
from tests.prometheus import sample_value
from tests.service_helpers import held_app

KEY = "k" * 24
AUTH = {"Authorization": f"Bearer {KEY}"}
NOT_JSON = b'{"text": "unterminated'


def _held(tiny_artifact: Path, gate: threading.Event, **overrides: Any) -> Any:
    """The held tiny app with an API key, and a client that sends it."""
    return held_app(tiny_artifact.parent, gate, headers=AUTH, api_keys=[KEY], **overrides)


async def _until(condition: Any) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached in 5 s")


async def test_beyond_the_inflight_bound_is_refused_before_parsing(tiny_artifact: Path) -> None:
    gate = threading.Event()
    async with held_app(
        tiny_artifact.parent, gate, headers=AUTH, api_keys=[KEY], max_inflight=1, overload_hold_s=0
    ) as (app, client):
        held = asyncio.create_task(client.post("/tag", json={"text": "a b"}))
        await _until(lambda: app.state.admission.inflight == 1)
        # Invalid JSON: a 400 if it were parsed; the full worker answers 503 first.
        response = await client.post(
            "/tag", content=NOT_JSON, headers={"content-type": "application/json"}
        )
        assert response.status_code == 503
        assert response.headers["retry-after"] == "1"
        assert "TAGSERVE_MAX_INFLIGHT" in response.json()["detail"]
        # The key is still checked before anything else.
        wrong = await client.post("/tag", content=NOT_JSON, headers={"Authorization": "Bearer x"})
        assert wrong.status_code == 401
        gate.set()
        assert (await held).status_code == 200
        assert app.state.admission.inflight == 0
        # Normal requests are unaffected once there is room; the bad body now gets its 400.
        assert (await client.post("/tag", json={"text": "ok"})).status_code == 200
        assert (await client.post("/tag", content=NOT_JSON)).status_code == 400
        metrics = (await client.get("/metrics")).text
        assert sample_value(metrics, "tagserve_overload_rejections_total", model="tiny") == 1


async def test_a_full_queue_refuses_by_body_size_before_parsing(tiny_artifact: Path) -> None:
    gate = threading.Event()
    async with held_app(
        tiny_artifact.parent,
        gate,
        headers=AUTH,
        api_keys=[KEY],
        max_queue=8,
        max_batch_size=2,
        overload_hold_s=0,
    ) as (app, client):
        held = asyncio.create_task(client.post("/tag", json={"texts": ["a b"] * 6}))
        batcher = app.state.models["tiny"].batcher
        await _until(lambda: batcher.batches == 0 and batcher.waiting >= 4)
        # About 8 sentences' worth of bytes, and not even JSON: refused from its size alone.
        big = b"[" + b" " * (8 * BYTES_PER_SENTENCE)
        response = await client.post(
            "/tag", content=big, headers={"content-type": "application/json"}
        )
        assert response.status_code == 503
        assert response.headers["retry-after"] == "1"
        assert "limit 8, TAGSERVE_MAX_QUEUE" in response.json()["detail"]
        # A small request still fits: admission errs low, the batcher decides.
        small = asyncio.create_task(client.post("/tag", json={"text": "fits"}))
        await _until(lambda: app.state.admission.inflight == 2)
        gate.set()
        assert (await held).status_code == 200
        assert (await small).status_code == 200
        assert app.state.admission.inflight == 0


async def test_requests_within_the_bounds_all_succeed(tiny_artifact: Path) -> None:
    gate = threading.Event()
    gate.set()
    async with held_app(
        tiny_artifact.parent, gate, headers=AUTH, api_keys=[KEY], max_inflight=4
    ) as (app, client):
        answers = await asyncio.gather(
            *(client.post("/tag", json={"texts": ["a b", "c"]}) for _ in range(4))
        )
        assert [a.status_code for a in answers] == [200] * 4
        assert app.state.admission.inflight == 0


async def test_a_request_that_does_not_fit_is_held_then_served(tiny_artifact: Path) -> None:
    gate = threading.Event()
    async with held_app(
        tiny_artifact.parent, gate, headers=AUTH, api_keys=[KEY], max_inflight=1, overload_hold_s=30
    ) as (app, client):
        first = asyncio.create_task(client.post("/tag", json={"text": "a b"}))
        await _until(lambda: app.state.admission.inflight == 1)
        second = asyncio.create_task(client.post("/tag", json={"text": "c d"}))
        third = asyncio.create_task(client.post("/tag", json={"text": "e"}))
        # Held, not refused: nothing answered while the model is busy.
        await _until(lambda: app.state.admission.held == 2)
        assert not second.done() and not third.done()
        gate.set()
        answers = [await task for task in (first, second, third)]
        assert [a.status_code for a in answers] == [200] * 3
        assert answers[1].json()["results"][0]["tokens"][0]["text"] == "c"
        assert (app.state.admission.inflight, app.state.admission.held) == (0, 0)


async def test_the_hold_runs_out_into_a_503(tiny_artifact: Path) -> None:
    gate = threading.Event()
    async with held_app(
        tiny_artifact.parent,
        gate,
        headers=AUTH,
        api_keys=[KEY],
        max_inflight=1,
        overload_hold_s=0.2,
    ) as (app, client):
        first = asyncio.create_task(client.post("/tag", json={"text": "a b"}))
        await _until(lambda: app.state.admission.inflight == 1)
        started = asyncio.get_running_loop().time()
        refused = await client.post("/tag", json={"text": "late"})
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "1"
        assert "TAGSERVE_MAX_INFLIGHT" in refused.json()["detail"]
        assert asyncio.get_running_loop().time() - started >= 0.2
        assert app.state.admission.held == 0
        gate.set()
        assert (await first).status_code == 200


async def test_the_waiting_room_is_first_come_first_served() -> None:
    admission = Admission(max_inflight=1, max_queue=100, label="m", hold_s=30)
    await admission.enter(10, [])
    order: list[str] = []

    async def arrive(name: str) -> None:
        await admission.enter(10, [])
        order.append(name)

    tasks = {name: asyncio.create_task(arrive(name)) for name in "abc"}
    for _ in range(10):
        await asyncio.sleep(0)
    assert admission.held == 3 and not order
    # A client that leaves while held gives up its place; the next in line still gets in.
    tasks["a"].cancel()
    admission.release()
    await asyncio.sleep(0.01)
    assert order == ["b"]
    admission.release()
    await asyncio.sleep(0.01)
    assert order == ["b", "c"]
    assert admission.held == 0 and admission.held_bytes == 0


async def test_the_waiting_room_is_bounded_in_bytes() -> None:
    admission = Admission(max_inflight=1, max_queue=100, label="m", hold_s=30, max_held_bytes=100)
    await admission.enter(10, [])
    waiting = asyncio.create_task(admission.enter(60, []))
    await asyncio.sleep(0.01)
    assert admission.held == 1
    # Past the room's bytes: refused at once, not held.
    with pytest.raises(Overloaded):
        await admission.enter(60, [])
    admission.release()
    await waiting
    assert admission.inflight == 1 and admission.held == 0


def test_estimate_errs_low_and_is_never_zero() -> None:
    assert estimate_sentences(0) == 1
    assert estimate_sentences(10 * BYTES_PER_SENTENCE + 5) == 10


@pytest.mark.parametrize(
    ("field", "value"), [("max_inflight", 0), ("http_nice", -1), ("http_nice", 20)]
)
def test_settings_validate(tiny_artifact: Path, field: str, value: int) -> None:
    with pytest.raises(ValidationError, match=field):
        Settings(models_dir=tiny_artifact.parent, **{field: value})


def test_settings_defaults_and_environment(
    tiny_artifact: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    defaults = Settings(models_dir=tiny_artifact.parent)
    assert (defaults.max_inflight, defaults.http_nice) == (512, 10)
    monkeypatch.setenv("TAGSERVE_MAX_INFLIGHT", "7")
    monkeypatch.setenv("TAGSERVE_HTTP_NICE", "0")
    read = Settings(models_dir=tiny_artifact.parent)
    assert (read.max_inflight, read.http_nice) == (7, 0)
