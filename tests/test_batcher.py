"""Dynamic batching: batches form across concurrent callers, each gets its own answers in order."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import httpx
import pytest

from tagserve.model.predictor import TaggedSentence
from tagserve.service.errors import ModelFailure, Overloaded
from tagserve.service.inference.batcher import Batcher
from tagserve.service.inference.in_process import ThreadTagger
from tests.prometheus import sample_value
from tests.service_helpers import held_app, tiny_app


class EchoModel:
    """A stand-in model whose tags spell out the words, so answers can be traced to inputs."""

    def __init__(self, calls: list[int], gate: threading.Event | None = None) -> None:
        self.calls = calls
        self.gate = gate

    def predict(self, sentences: list[list[str]]) -> list[TaggedSentence]:
        if self.gate is not None:
            self.gate.wait(5)
        self.calls.append(len(sentences))
        if any(w == "BOOM" for s in sentences for w in s):
            raise RuntimeError("model exploded")
        return [TaggedSentence([f"tag-{w}" for w in s], [1.0] * len(s)) for s in sentences]


def echo_model(calls: list[int], gate: threading.Event | None = None) -> ThreadTagger:
    """The stand-in in a thread of its own, as the service runs an in-process model."""
    return ThreadTagger(EchoModel(calls, gate), "echo")


async def test_concurrent_callers_share_batches_and_get_their_own_answers() -> None:
    calls: list[int] = []
    gate = threading.Event()
    batcher = Batcher(
        echo_model(calls, gate), "echo", max_batch_size=16, max_wait_ms=20, max_queue=1000
    )
    batcher.start()
    requests = [[[f"r{r}s{s}w{w}" for w in range(3)] for s in range(r % 4 + 1)] for r in range(40)]
    tasks = [asyncio.create_task(batcher.submit(sentences)) for sentences in requests]
    await asyncio.sleep(0.05)
    gate.set()
    answers = await asyncio.gather(*tasks)
    for sentences, answer in zip(requests, answers, strict=True):
        assert [a.tags for a in answer] == [[f"tag-{w}" for w in s] for s in sentences]
    assert sum(calls) == sum(map(len, requests))
    assert max(calls) == 16 and batcher.largest_batch == 16
    assert batcher.batches < len(requests)
    await batcher.close(1.0)


async def test_a_large_request_is_split_across_batches_in_order() -> None:
    calls: list[int] = []
    batcher = Batcher(echo_model(calls), "echo", max_batch_size=8, max_wait_ms=1, max_queue=1000)
    batcher.start()
    sentences = [[f"w{i}"] for i in range(100)]
    answer = await batcher.submit(sentences)
    assert [a.tags for a in answer] == [[f"tag-w{i}"] for i in range(100)]
    assert len(calls) >= 13 and max(calls) <= 8
    await batcher.close(1.0)


async def test_full_queue_is_refused_without_touching_queued_work() -> None:
    calls: list[int] = []
    gate = threading.Event()
    batcher = Batcher(
        echo_model(calls, gate), "echo", max_batch_size=4, max_wait_ms=0, max_queue=10
    )
    batcher.start()
    first = asyncio.create_task(batcher.submit([["a"]] * 8))
    await asyncio.sleep(0.02)
    with pytest.raises(Overloaded, match=r"limit 10"):
        await batcher.submit([["b"]] * 8)
    gate.set()
    assert [a.tags for a in await first] == [["tag-a"]] * 8
    await batcher.close(1.0)


async def test_a_model_error_fails_only_its_batch() -> None:
    calls: list[int] = []
    batcher = Batcher(echo_model(calls), "echo", max_batch_size=1, max_wait_ms=0, max_queue=100)
    batcher.start()
    bad = asyncio.create_task(batcher.submit([["BOOM"]]))
    good = asyncio.create_task(batcher.submit([["fine"]]))
    with pytest.raises(ModelFailure, match="model echo failed: RuntimeError"):
        await bad
    assert (await good)[0].tags == ["tag-fine"]
    assert (await batcher.submit([["after"]]))[0].tags == ["tag-after"]
    await batcher.close(1.0)


async def test_batches_form_through_the_http_app(tiny_artifact: Path) -> None:
    """Concurrent HTTP callers: /metrics shows multi-sentence batches; answers equal solo ones."""
    app = tiny_app(tiny_artifact.parent, max_batch_size=32, max_wait_ms=20)
    texts = [
        f"Harry Potter number {i} met Hermione" if i % 2 else f"London {i} is big"
        for i in range(24)
    ]
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            solo = {}
            for text in texts[:4]:
                solo[text] = (await client.post("/tag", json={"text": text})).json()["results"][0]
            together = await asyncio.gather(*(client.post("/tag", json={"text": t}) for t in texts))
            metrics = (await client.get("/metrics")).text
    for text, response in zip(texts, together, strict=True):
        assert response.status_code == 200
        result = response.json()["results"][0]
        assert result["text"] == text
        if text in solo:
            assert result == solo[text]
    batcher = app.state.models["tiny"].batcher
    assert batcher.largest_batch > 1
    count = sample_value(metrics, "tagserve_batch_sentences_count", model="tiny")
    total = sample_value(metrics, "tagserve_batch_sentences_sum", model="tiny")
    assert total == 28 and count < 28


async def test_a_request_larger_than_the_queue_waits_for_an_empty_queue() -> None:
    calls: list[int] = []
    gate = threading.Event()
    batcher = Batcher(echo_model(calls, gate), "echo", max_batch_size=2, max_wait_ms=0, max_queue=3)
    batcher.start()
    big = asyncio.create_task(batcher.submit([["a"]] * 6))
    await asyncio.sleep(0.02)
    with pytest.raises(Overloaded, match=r"'echo' is at capacity \(4 sentences queued, limit 3"):
        await batcher.submit([["b"]])
    gate.set()
    assert len(await big) == 6
    assert [a.tags for a in await batcher.submit([["c"]] * 5)] == [["tag-c"]] * 5
    await batcher.close(1.0)


async def test_overload_through_http_gives_503_with_retry_after(tiny_artifact: Path) -> None:
    gate = threading.Event()
    async with held_app(tiny_artifact.parent, gate, max_queue=5, max_batch_size=2) as (
        app,
        client,
    ):
        batcher = app.state.models["tiny"].batcher
        held = asyncio.create_task(client.post("/tag", json={"texts": ["a b"] * 5}))
        while batcher.batches == 0 and batcher.waiting < 3:
            await asyncio.sleep(0.01)
        response = await client.post("/tag", json={"texts": ["x", "y", "z"]})
        assert response.status_code == 503
        assert response.headers["retry-after"] == "1"
        assert "limit 5" in response.json()["detail"]
        assert "TAGSERVE_MAX_QUEUE" in response.json()["detail"]
        gate.set()
        assert (await held).status_code == 200
        assert (await client.post("/tag", json={"text": "ok"})).status_code == 200
        metrics = (await client.get("/metrics")).text
        assert sample_value(metrics, "tagserve_overload_rejections_total", model="tiny") == 1
