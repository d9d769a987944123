"""deploy/nginx.conf with real nginx: a POST /tag that reached a replica is never replayed on
another (a 503, whether an overload with Retry-After or a model_timeout without, goes to the
client), a POST that could not be sent to a replica that is down goes to the next one, a GET
answered 503 is retried, a body just over the app's limit reaches the app (whose 413 names
TAGSERVE_MAX_BODY_BYTES), and connections to the replicas are kept alive.

The config nginx runs is deploy/nginx.conf itself with only the Docker-specific parts
substituted: the upstream servers (loopback HTTP servers instead of the compose replicas, and
without `resolve`, which needs nginx 1.27.3 and a resolver), the listen address (127.0.0.1 and
a free port), Docker's DNS resolver (dropped), and every path nginx writes (pid, logs, temp
files) moved under tmp_path."""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tagserve.service.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "deploy" / "nginx.conf"
REQUESTS = 20

# Starts processes (nginx): see the slow marker.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


# The two kinds of 503 the service sends: an overload (queue full, draining, a model worker
# being replaced) with Retry-After, and a request that hung a model, without.
OVERLOAD = "overload"
MODEL_TIMEOUT = "model_timeout"


@dataclass
class Upstream:
    """A stand-in tagserve replica on loopback that answers every POST /tag and GET /health
    with ``status`` (503 as ``kind``)."""

    status: int
    kind: str = OVERLOAD
    posts: int = 0
    gets: int = 0
    body_sizes: list[int] = field(default_factory=list)
    connections: set[tuple[str, int]] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handler(self) -> type[BaseHTTPRequestHandler]:
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as uvicorn does

            def do_POST(self) -> None:
                size = len(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                with upstream.lock:
                    upstream.posts += 1
                    upstream.body_sizes.append(size)
                    upstream.connections.add(self.client_address[:2])
                if self.path != "/tag":
                    self._answer(404, {"detail": "not found"})
                else:
                    self._status({"model": {"name": "ner", "version": "1.0.0"}, "results": []})

            def do_GET(self) -> None:
                with upstream.lock:
                    upstream.gets += 1
                self._status({"status": "ok"})

            def _status(self, ok: object) -> None:
                if upstream.status != 503:
                    self._answer(upstream.status, ok)
                elif upstream.kind == MODEL_TIMEOUT:
                    detail = "model 'ner' took longer than 5.0 s on a batch"
                    self._answer(503, {"detail": detail, "code": MODEL_TIMEOUT})
                else:
                    self._answer(503, {"detail": "model 'ner' is at capacity"}, retry_after="1")

            def _answer(self, status: int, payload: object, retry_after: str = "") -> None:
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                if retry_after:
                    self.send_header("Retry-After", retry_after)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # nginx's shutdown resets its idle keep-alive connections: not an error here.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@contextmanager
def serving(upstream: Upstream) -> Iterator[int]:
    """Run ``upstream`` on a free loopback port; yields the port."""
    server = QuietServer(("127.0.0.1", 0), upstream.handler())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def render(conf: str, upstream_ports: list[int], port: int, prefix: Path) -> str:
    """deploy/nginx.conf for this machine: same upstream and location logic, loopback
    servers, a loopback listener, and nothing written outside ``prefix``."""
    server = re.compile(
        r"^(?P<indent>[ \t]*)server[ \t]+tagserve-replica:8000(?P<params>[^;]*);$", re.M
    )
    match = server.search(conf)
    assert match, "deploy/nginx.conf: no 'server tagserve-replica:8000' line in the upstream"
    # Loopback addresses need no lookups (and Debian's nginx may predate `resolve`).
    params, resolves = re.subn(r"[ \t]+resolve\b", "", match["params"])
    assert resolves == 1, "deploy/nginx.conf: the replicas' server line lost `resolve`"
    servers = "\n".join(f"{match['indent']}server 127.0.0.1:{p}{params};" for p in upstream_ports)
    conf = conf[: match.start()] + servers + conf[match.end() :]
    conf, listens = re.subn(
        r"^([ \t]*)listen[ \t]+8080;$", rf"\g<1>listen 127.0.0.1:{port};", conf, flags=re.M
    )
    assert listens == 1, "deploy/nginx.conf: expected one 'listen 8080;'"
    conf = re.sub(r"^[ \t]*resolver[ \t][^;]*;\n", "", conf, flags=re.M)  # Docker's DNS
    paths = "".join(
        f"    {directive} {prefix / name};\n"
        for directive, name in [
            ("access_log", "access.log"),
            ("client_body_temp_path", "client_body"),
            ("proxy_temp_path", "proxy"),
            ("fastcgi_temp_path", "fastcgi"),
            ("uwsgi_temp_path", "uwsgi"),
            ("scgi_temp_path", "scgi"),
        ]
    )
    conf, https = re.subn(r"^http[ \t]*\{\n", lambda m: m.group(0) + paths, conf, flags=re.M)
    assert https == 1, "deploy/nginx.conf: expected one http block"
    header = (
        "daemon off;\n"
        # As root, nginx's worker would run as nobody, which cannot write the request-body
        # temp files under ``prefix`` (a large body is buffered to a file).
        + ("user root;\n" if os.geteuid() == 0 else "")
        + "worker_processes 1;\n"
        f"pid {prefix / 'nginx.pid'};\n"
        f"error_log {prefix / 'error.log'} info;\n"
    )
    return header + conf


@contextmanager
def running_nginx(binary: str, conf: str, prefix: Path, port: int) -> Iterator[None]:
    """nginx in the foreground with ``conf``; waits (bounded) until it listens, then stops it."""
    path = prefix / "nginx.conf"
    path.write_text(conf, encoding="utf-8")
    error_log = prefix / "error.log"
    process = subprocess.Popen(
        [binary, "-p", f"{prefix}/", "-e", str(error_log), "-c", str(path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            if process.poll() is not None:
                log = error_log.read_text() if error_log.exists() else ""
                stderr = process.stderr.read().decode() if process.stderr else ""
                pytest.fail(f"nginx exited with {process.returncode}:\n{stderr}\n{log}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("nginx did not start listening within 15 s")
                time.sleep(0.05)
        yield
    finally:
        process.terminate()  # SIGTERM: nginx's fast shutdown
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        if process.stderr:
            process.stderr.close()


@contextmanager
def through_nginx(
    binary: str, conf: str, tmp_path: Path, upstreams: list[Upstream | None]
) -> Iterator[httpx.Client]:
    """nginx with ``conf`` in front of ``upstreams`` (None: a port nothing listens on, a
    replica that is down); yields a client for nginx."""
    port = free_port()
    with contextlib.ExitStack() as stack:
        ports = [
            free_port() if upstream is None else stack.enter_context(serving(upstream))
            for upstream in upstreams
        ]
        rendered = render(conf, ports, port, tmp_path)
        stack.enter_context(running_nginx(binary, rendered, tmp_path, port))
        yield stack.enter_context(httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10))


def post_tags(client: httpx.Client) -> list[httpx.Response]:
    return [client.post("/tag", json={"text": f"Harry Potter {i}"}) for i in range(REQUESTS)]


@pytest.mark.parametrize("kind", [OVERLOAD, MODEL_TIMEOUT])
def test_a_post_answered_503_is_not_replayed_on_another_replica(
    nginx: str, tmp_path: Path, kind: str
) -> None:
    failing, working = Upstream(503, kind), Upstream(200)
    with through_nginx(nginx, CONF.read_text(), tmp_path, [failing, working]) as client:
        responses = post_tags(client)
    statuses = [r.status_code for r in responses]
    assert failing.posts >= 1, "the 503 replica got no request: nothing was exercised"
    # Each POST reached exactly one replica, and the 503s reached the client as sent.
    assert failing.posts + working.posts == REQUESTS
    assert statuses.count(503) == failing.posts
    assert statuses.count(200) == working.posts
    for response in responses:
        if response.status_code == 503:
            if kind == MODEL_TIMEOUT:
                assert response.json()["code"] == MODEL_TIMEOUT
                assert "retry-after" not in response.headers
            else:
                assert response.headers["retry-after"] == "1"


def test_a_post_to_a_replica_that_is_down_goes_to_the_next(nginx: str, tmp_path: Path) -> None:
    working = Upstream(200)
    with through_nginx(nginx, CONF.read_text(), tmp_path, [None, working]) as client:
        statuses = [r.status_code for r in post_tags(client)]
    assert statuses == [200] * REQUESTS
    assert working.posts == REQUESTS
    # keepalive + HTTP/1.1 + an empty Connection header: connections to a replica are reused.
    assert len(working.connections) < working.posts, "nginx opened a connection per request"


def test_a_get_answered_503_is_retried(nginx: str, tmp_path: Path) -> None:
    failing, working = Upstream(503), Upstream(200)
    with through_nginx(nginx, CONF.read_text(), tmp_path, [failing, working]) as client:
        statuses = [client.get("/health").status_code for _ in range(REQUESTS)]
    assert statuses == [200] * REQUESTS
    assert failing.gets >= 1


def test_with_non_idempotent_nginx_would_replay_the_post(nginx: str, tmp_path: Path) -> None:
    """The control: the same config plus non_idempotent replays a POST answered 503 on the
    next replica (what a model_timeout must not get), so the tests above pass because the
    flag is absent."""
    conf, n = re.subn(r"(proxy_next_upstream [^;]*?);", r"\1 non_idempotent;", CONF.read_text())
    assert n == 1, "deploy/nginx.conf: one proxy_next_upstream directive expected"
    failing, working = Upstream(503, MODEL_TIMEOUT), Upstream(200)
    with through_nginx(nginx, conf, tmp_path, [failing, working]) as client:
        statuses = [r.status_code for r in post_tags(client)]
    assert failing.posts >= 1
    assert statuses == [200] * REQUESTS


def test_a_body_over_the_apps_limit_reaches_the_app(nginx: str, tmp_path: Path) -> None:
    """One byte over TAGSERVE_MAX_BODY_BYTES is the app's to refuse (its 413 names the
    setting); only a body beyond nginx's larger limit is refused by nginx, in JSON too."""
    app_limit = Settings.model_fields["max_body_bytes"].default
    replica = Upstream(200)
    headers = {"content-type": "application/json"}
    with through_nginx(nginx, CONF.read_text(), tmp_path, [replica]) as client:
        passed = client.post("/tag", content=b" " * (app_limit + 1), headers=headers)
        refused = client.post("/tag", content=b" " * (4 * 1024**2), headers=headers)
    assert passed.status_code == 200
    assert replica.body_sizes == [app_limit + 1]
    assert refused.status_code == 413
    assert "client_max_body_size" in refused.json()["detail"]
