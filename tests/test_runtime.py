"""The serving runtime through a real ``tagserve serve``: no hang at any thread count, a
killed or hung model worker is replaced, one bad request never fails another, idle
connections outlive the client's keep-alive, and a second SIGTERM stops at once."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.live_server import LiveServer, start_server
from tests.processes import child_pids, worker_pids
from tests.prometheus import sample_value

# Starts real processes (a tagserve serve or a tagserve command): see the slow marker.
pytestmark = pytest.mark.slow

SENTENCE = "Angela Merkel met Emmanuel Macron in Berlin on Tuesday."
NER_ONLY = {"models": '["ner"]', "log_level": "error"}


@pytest.fixture
def server(shipped_models_dir: Path, request: pytest.FixtureRequest) -> Iterator[LiveServer]:
    live = start_server(shipped_models_dir, **{**NER_ONLY, **getattr(request, "param", {})})
    yield live
    live.stop()


def _wait_until(condition, seconds: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if condition():
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("threads", ["1", "2", "4"])
def test_every_thread_count_answers_within_a_second(shipped_models_dir: Path, threads: str) -> None:
    live = start_server(shipped_models_dir, torch_threads=threads, **NER_ONLY)
    try:
        first = httpx.post(f"{live.url}/tag", json={"text": SENTENCE}, timeout=20)
        assert first.status_code == 200
        started = time.monotonic()
        again = httpx.post(f"{live.url}/tag", json={"text": SENTENCE}, timeout=20)
        assert again.status_code == 200 and time.monotonic() - started < 1.0
        assert again.json() == first.json()
    finally:
        live.stop()


def test_a_killed_worker_under_load_is_replaced(server: LiveServer) -> None:
    (worker,) = worker_pids(server.process.pid)
    statuses: Counter[int | str] = Counter()
    stop = threading.Event()

    def client() -> None:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            while not stop.is_set():
                try:
                    statuses[http.post("/tag", json={"text": SENTENCE}).status_code] += 1
                except httpx.HTTPError as error:
                    statuses[type(error).__name__] += 1

    clients = [threading.Thread(target=client) for _ in range(50)]
    for thread in clients:
        thread.start()
    time.sleep(1.0)
    os.kill(worker, signal.SIGKILL)
    killed = time.monotonic()
    assert _wait_until(
        lambda: (
            httpx.get(f"{server.url}/health").status_code == 200
            and worker_pids(server.process.pid) not in ([], [worker])
        ),
        10,
    )
    answer = httpx.post(f"{server.url}/tag", json={"text": SENTENCE}, timeout=10)
    assert answer.status_code == 200 and time.monotonic() - killed < 10
    stop.set()
    for thread in clients:
        thread.join(30)
    assert set(statuses) <= {200, 503}, statuses
    assert statuses[200] > 0
    metrics = httpx.get(f"{server.url}/metrics").text
    assert sample_value(metrics, "tagserve_model_worker_restarts_total", model="ner") == 1


@pytest.mark.parametrize(
    "server", [{"batch_timeout_s": "1", "test_hang_token": "HANGME"}], indirect=True
)
def test_a_hung_worker_is_replaced(server: LiveServer) -> None:
    hung = httpx.post(f"{server.url}/tag", json={"text": "HANGME now"}, timeout=20)
    # Alone in its batch, it is the query of death: a 503 that says not to retry it.
    assert hung.status_code == 503 and "retry-after" not in hung.headers
    assert hung.json()["code"] == "model_timeout"
    assert "overrun the batch timeout (1 s, TAGSERVE_BATCH_TIMEOUT_S)" in hung.json()["detail"]
    after = httpx.post(f"{server.url}/tag", json={"text": SENTENCE}, timeout=30)
    assert after.status_code == 200
    metrics = httpx.get(f"{server.url}/metrics").text
    assert sample_value(metrics, "tagserve_model_worker_restarts_total", model="ner") == 1


@pytest.mark.parametrize(
    "server", [{"batch_timeout_s": "2", "test_hang_token": "HANGME"}], indirect=True
)
def test_a_query_of_death_fails_alone_among_good_requests(server: LiveServer) -> None:
    """One request that hangs the model, sent amid 50 good ones: every good one succeeds,
    the bad one fails once with the not-retryable 503, and the worker is killed at most
    twice (its shared batch, then the request alone), never once per good request."""

    async def run() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            good = [client.post("/tag", json={"text": f"{SENTENCE} ({i})"}) for i in range(50)]
            bad = client.post("/tag", json={"text": "Angela HANGME Merkel"})
            return list(await asyncio.gather(*good[:25], bad, *good[25:]))

    answers = asyncio.run(run())
    bad = answers.pop(25)
    assert [a.status_code for a in answers] == [200] * 50, [
        a.text for a in answers if a.status_code != 200
    ]
    assert bad.status_code == 503 and bad.json()["code"] == "model_timeout"
    assert "retry-after" not in bad.headers
    metrics = httpx.get(f"{server.url}/metrics").text
    assert 1 <= sample_value(metrics, "tagserve_model_worker_restarts_total", model="ner") <= 2


def test_lone_surrogates_never_fail_good_requests(server: LiveServer) -> None:
    good = [f"{SENTENCE} ({i})" for i in range(20)]
    solo = {text: httpx.post(f"{server.url}/tag", json={"text": text}).json() for text in good}
    bodies = [{"json": {"text": good[i % 20]}, "good": True} for i in range(200)]
    for i in range(20):
        raw = '{"text": "Angela \\ud800 Merkel ' + str(i) + '"}'
        bodies.insert(i * 11, {"content": raw, "good": False})

    async def run() -> list[tuple[bool, httpx.Response, str]]:
        semaphore = asyncio.Semaphore(32)
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:

            async def one(body: dict) -> tuple[bool, httpx.Response, str]:  # type: ignore[type-arg]
                async with semaphore:
                    if body["good"]:
                        response = await client.post("/tag", json=body["json"])
                        return True, response, body["json"]["text"]
                    headers = {"content-type": "application/json"}
                    response = await client.post("/tag", content=body["content"], headers=headers)
                    return False, response, ""

            return await asyncio.gather(*(one(body) for body in bodies))

    for _ in range(3):
        for is_good, response, text in asyncio.run(run()):
            if is_good:
                assert response.status_code == 200 and response.json() == solo[text]
            else:
                assert response.status_code == 422, response.text
                assert response.json()["detail"].startswith("text: lone surrogate U+D800")


def test_an_idle_connection_outlives_the_clients_keep_alive(server: LiveServer) -> None:
    """The server must never be the side that closes an idle connection a client may reuse:
    with the server's and httpx's keep-alive both at 5 s, a reused connection could be closed
    under the request (the burst's ReadError). Idle 6 s, then reuse the same socket."""
    host, port = server.url.removeprefix("http://").split(":")
    body = b'{"text": "Paris"}'
    request = (
        f"POST /tag HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        for attempt in range(2):
            connection.sendall(request)
            reply = _read_response(connection)
            assert reply.startswith(b"HTTP/1.1 200"), (attempt, reply[:100])
            if attempt == 0:
                time.sleep(6)


def _read_response(connection: socket.socket) -> bytes:
    """One whole HTTP/1.1 response (headers, then Content-Length bytes); b"" if closed."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += connection.recv(65536)
    return data


@pytest.mark.parametrize("server", [{"drain_notice_s": "30"}], indirect=True)
def test_a_second_sigterm_stops_at_once(server: LiveServer) -> None:
    children = child_pids(server.process.pid)
    server.process.send_signal(signal.SIGTERM)
    assert _wait_until(lambda: httpx.get(f"{server.url}/health").status_code == 503, 5)
    started = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    server.process.wait(10)
    assert time.monotonic() - started < 5
    assert _wait_until(lambda: not [p for p in children if Path(f"/proc/{p}").exists()], 5)
