"""A real ``tagserve serve`` process on a loopback port, for tests that need HTTP and signals."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.hang_injection import FOLDER as HANG_FOLDER

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class LiveServer:
    process: subprocess.Popen[bytes]
    url: str

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.wait(5)


def start_server(
    models_dir: Path, timeout: float = 60.0, log: Path | None = None, **settings: str
) -> LiveServer:
    """Start the server with ``TAGSERVE_*`` settings and wait (bounded) for /health = 200.

    One HTTP worker unless ``workers`` says otherwise: most tests look at one process.
    ``log``: a file for the server's output (its processes' stdout and stderr), for tests
    that read the log; else the output is the test run's."""
    settings = {"workers": "1", **settings}
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # A hang injected from outside the code under test (tests/hang_injection).
    hanging = "test_hang_token" in settings or "test_loop_hang_token" in settings
    env = {
        **os.environ,
        "PYTHONPATH": f"{HANG_FOLDER}{os.pathsep}{ROOT}" if hanging else str(ROOT),
        "TAGSERVE_MODELS_DIR": str(models_dir),
        "TAGSERVE_LOG_LEVEL": "warning",
        **{f"TAGSERVE_{k.upper()}": v for k, v in settings.items()},
    }
    output = None if log is None else log.open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "tagserve", "serve", "--port", str(port)],
        env=env,
        stdout=output,
        stderr=output,
    )
    if output is not None:
        output.close()  # the server has its own copy
    server = LiveServer(process, f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            if httpx.get(f"{server.url}/health", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    server.stop()
    raise TimeoutError("server did not become healthy")
