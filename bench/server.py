"""Start ``tagserve serve`` on a free loopback port for a benchmark, and stop it afterwards."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

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


def server_pid(url: str) -> int:
    """The ``tagserve serve`` process behind ``url`` (not its model processes), via /proc."""
    port = url.rsplit(":", 1)[1].encode()
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            stat = Path(f"/proc/{pid}/stat").read_text()
            parent_command = Path(f"/proc/{stat.rsplit(')', 1)[1].split()[1]}/cmdline").read_bytes()
        except OSError:
            continue
        # The model processes are forks with the same command line: skip them.
        if b"serve" in command and port in command and port not in parent_command:
            return int(pid)
    raise RuntimeError(f"no tagserve serve process on port {port.decode()}")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_tree(pid: int) -> list[int]:
    """A process and all its descendants (the server, its HTTP and model workers)."""
    found = [pid]
    for task in os.listdir(f"/proc/{pid}/task"):
        for child in Path(f"/proc/{pid}/task/{task}/children").read_text().split():
            found += process_tree(int(child))
    return found


def http_pids(url: str, server: int, workers: int) -> set[int]:
    """The processes answering HTTP: the pids the responses name (fresh connections)."""
    if workers == 1:
        return {server}
    seen: set[int] = set()
    deadline = time.monotonic() + 30
    while len(seen) < workers and time.monotonic() < deadline:
        seen.add(int(httpx.get(f"{url}/health", timeout=5).headers["x-tagserve-worker"]))
    return seen


def health_wrk(url: str, seconds: float, http: set[int]) -> dict:
    """wrk -c64 on GET /health: requests, req/s, and ``cpu``: the CPU seconds the ``http``
    processes spent per request (the baseline of the /tag : /health ratio)."""
    before = sum(cpu_seconds(p) for p in http)
    done = subprocess.run(
        ["wrk", "-t2", "-c64", f"-d{int(seconds)}s", f"{url}/health"],
        capture_output=True,
        text=True,
        check=True,
    )
    line = next(line for line in done.stdout.splitlines() if line.startswith("Requests/sec:"))
    total = next(line for line in done.stdout.splitlines() if "requests in" in line)
    requests = int(total.split()[0])
    cpu = (sum(cpu_seconds(p) for p in http) - before) / max(requests, 1)
    return {"rps": float(line.split()[1]), "requests": requests, "cpu": cpu}
