"""Slow clients: a connection that sends nothing, headers that trickle, a body that stalls,
each get 408 (or a closed connection) within their timeout; an idle kept-alive connection
is closed after TAGSERVE_KEEP_ALIVE_S; past TAGSERVE_MAX_CONNECTIONS a request gets 503 at
once; and none of it touches a normal request."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.live_server import LiveServer, start_server

pytestmark = pytest.mark.slow
BODY = b'{"text": "Harry Potter went to London"}'


@pytest.fixture(scope="module")
def server(shipped_models_dir: Path) -> Iterator[LiveServer]:
    live = start_server(
        shipped_models_dir,
        models='["ner"]',
        log_level="error",
        header_timeout_s="1",
        body_timeout_s="1",
        keep_alive_s="2",
        max_connections="20",
    )
    yield live
    live.stop()


def _connect(server: LiveServer) -> socket.socket:
    host, port = server.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    return sock


def _read_all(sock: socket.socket) -> tuple[bytes, float]:
    """Everything until the server closes, and when it closed (monotonic)."""
    chunks = []
    while chunk := sock.recv(4096):
        chunks.append(chunk)
    return b"".join(chunks), time.monotonic()


def test_a_connection_that_sends_nothing_is_closed(server: LiveServer) -> None:
    with _connect(server) as sock:
        opened = time.monotonic()
        answer, closed = _read_all(sock)
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert b"TAGSERVE_HEADER_TIMEOUT_S" in answer
    assert 0.8 <= closed - opened < 5


def test_headers_that_trickle_are_cut_off(server: LiveServer) -> None:
    with _connect(server) as sock:
        opened = time.monotonic()
        for piece in (b"POST /tag HTTP/1.1\r\n", b"host: x\r\n", b"content-type: a"):
            sock.sendall(piece)
            time.sleep(0.4)
        answer, closed = _read_all(sock)
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert closed - opened < 5


def test_a_stalled_body_gets_408(server: LiveServer) -> None:
    with _connect(server) as sock:
        sock.sendall(
            b"POST /tag HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\n\r\n" % len(BODY) + BODY[:10]
        )
        sent = time.monotonic()
        answer, closed = _read_all(sock)
    assert answer.startswith(b"HTTP/1.1 408 ") and b"TAGSERVE_BODY_TIMEOUT_S" in answer
    assert 0.8 <= closed - sent < 5


def test_an_idle_kept_alive_connection_is_closed(server: LiveServer) -> None:
    with _connect(server) as sock:
        sock.sendall(
            b"POST /tag HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\n\r\n" % len(BODY) + BODY
        )
        first = sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200 ")
        answered = time.monotonic()
        rest, closed = _read_all(sock)
    assert b"408" not in rest  # idle after an answer: closed quietly by the keep-alive timeout
    assert 1.5 <= closed - answered < 6


def test_past_the_connection_limit_a_request_gets_503(server: LiveServer) -> None:
    held = [_connect(server) for _ in range(25)]
    try:
        time.sleep(0.2)
        response = httpx.post(f"{server.url}/tag", content=BODY, timeout=5)
        assert response.status_code == 503
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.5)
    response = httpx.post(f"{server.url}/tag", content=BODY, timeout=10)
    assert response.status_code == 200
