"""Model worker processes: same answers as in-process, errors stay per batch, a dead or hung
worker is replaced and counted, /health follows it, nothing is left running."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tagserve.model.artifact import load
from tagserve.model.predictor import Predictor
from tagserve.processes import pid_alive
from tagserve.service.api.app import create_app
from tagserve.service.inference.client import BatchTimeout, ModelClient, RemoteModelError
from tagserve.service.inference.owner import WorkerOwner
from tagserve.service.inference.registry import serve_remote, start_owners
from tagserve.service.metrics import Metrics
from tagserve.service.settings import Settings
from tests.hang_injection import hang_on
from tests.prometheus import sample_value

# Starts worker processes: see the slow marker.
pytestmark = pytest.mark.slow

SENTENCES = [["Harry", "Potter", "went", "to", "London"], ["x"], ["a", "b", "c"]]


class Worker:
    """A model worker as ``tagserve serve`` holds it: the owner of the process, and a client
    that reaches it as an HTTP worker does."""

    def __init__(self, path: Path, timeout_s: float) -> None:
        self.owner = WorkerOwner("tiny", path, torch_threads=1, batch_size=2, cache_words=100)
        self.owner.wait_ready()
        self.client = ModelClient(self.owner.address, batch_timeout_s=timeout_s)

    @property
    def pid(self) -> int | None:
        return self.owner.pid

    @property
    def restarts(self) -> int:
        return self.owner.restarts

    @property
    def alive(self) -> bool:
        return self.client.alive

    async def predict_async(self, sentences: list[list[str]]) -> object:
        return await self.client.predict_async(sentences)

    def close(self) -> None:
        self.client.close()
        self.owner.close()


def _worker(path: Path, timeout_s: float = 20.0) -> Worker:
    return Worker(path, timeout_s)


Predict = Callable[[Worker, list[list[str]]], object]


@pytest.fixture
def predict() -> Iterator[Predict]:
    """A worker reached as the batcher reaches it: ``predict_async`` on one event loop for
    the whole test."""
    loop = asyncio.new_event_loop()
    yield lambda worker, sentences: loop.run_until_complete(worker.predict_async(sentences))
    loop.close()


def _wait_until(condition, seconds: float = 20.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_worker_answers_equal_in_process_answers(tiny_artifact: Path, predict: Predict) -> None:
    worker = _worker(tiny_artifact)
    try:
        assert worker.pid != os.getpid()
        expected = Predictor(load(tiny_artifact), batch_size=2, cache_words=100)
        assert predict(worker, SENTENCES) == expected.predict(SENTENCES)
        again = predict(worker, SENTENCES[:1])  # the same connection, a second batch
        assert [t.tags for t in again] == [t.tags for t in expected.predict(SENTENCES[:1])]  # type: ignore[attr-defined]
    finally:
        worker.close()
    assert not worker.alive


def test_an_error_fails_one_batch_and_the_worker_goes_on(
    tiny_artifact: Path, predict: Predict
) -> None:
    worker = _worker(tiny_artifact)
    try:
        with pytest.raises(RemoteModelError, match="a batch must be a list of token lists"):
            predict(worker, [[1, 2]])  # type: ignore[list-item]
        assert len(predict(worker, SENTENCES)) == 3  # type: ignore[arg-type]
        assert worker.restarts == 0
    finally:
        worker.close()


def test_a_killed_worker_is_replaced(tiny_artifact: Path, predict: Predict) -> None:
    worker = _worker(tiny_artifact)
    try:
        assert len(predict(worker, SENTENCES)) == 3  # type: ignore[arg-type]
        first = worker.pid
        os.kill(first, 9)
        assert _wait_until(lambda: worker.restarts == 1)
        assert len(predict(worker, SENTENCES)) == 3  # type: ignore[arg-type]
        assert worker.alive and worker.restarts == 1
    finally:
        worker.close()


def test_a_hung_worker_is_replaced_and_its_batch_gets_unavailable(
    tiny_artifact: Path, monkeypatch: pytest.MonkeyPatch, predict: Predict
) -> None:
    hang_on(monkeypatch, "HANGME")
    worker = _worker(tiny_artifact, timeout_s=1.0)
    try:
        started = time.monotonic()
        with pytest.raises(BatchTimeout, match=r"overran the batch timeout \(1 s\)"):
            predict(worker, [["a", "HANGME"]])
        assert time.monotonic() - started < 5
        assert len(predict(worker, SENTENCES)) == 3  # type: ignore[arg-type]
        assert worker.restarts == 1
    finally:
        worker.close()


def test_health_follows_the_worker_and_recovers(tiny_artifact: Path) -> None:
    settings = Settings(models_dir=tiny_artifact.parent, default_model="tiny")
    metrics = Metrics()
    (owner,) = start_owners(settings, metrics, ["tiny"]).values()
    models = serve_remote(settings, metrics, {"tiny": owner.address})
    with TestClient(create_app(settings, models, metrics)) as client:
        assert client.post("/tag", json={"text": "Harry Potter"}).status_code == 200
        assert owner.pid is not None
        os.kill(owner.pid, 9)
        assert _wait_until(lambda: client.get("/health").status_code == 503, 5)
        assert client.get("/health").json() == {"status": "model worker down: tiny"}
        assert _wait_until(lambda: client.get("/health").status_code == 200)
        assert client.post("/tag", json={"text": "Harry Potter"}).status_code == 200
        text = client.get("/metrics").text
        assert sample_value(text, "tagserve_model_worker_restarts_total", model="tiny") == 1
    owner.close()
    assert owner.pid is not None and not pid_alive(owner.pid)
    assert not Path(owner.address.socket_path).parent.exists()  # no folder left behind
