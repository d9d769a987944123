"""Start ``tagserve serve`` on a free loopback port for a benchmark, and stop it afterwards."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def running_server(
    env: dict[str, str] | None = None, timeout: float = 60.0
) -> Iterator[tuple[str, float]]:
    """Yield the base URL and the seconds from process start to ``/health`` = 200."""
    port = free_port()
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "tagserve", "serve", "--port", str(port)],
        env={**os.environ, "TAGSERVE_LOG_LEVEL": "warning", **(env or {})},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"tagserve serve exited with status {process.returncode}")
            if time.perf_counter() - started > timeout:
                raise TimeoutError(f"no healthy server after {timeout} s")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            time.sleep(0.02)
        yield url, time.perf_counter() - started
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
