"""``tagserve serve --workers N``: N HTTP worker processes on one port.

One Python event loop serves about one core. Each HTTP worker is a spawned process with its
own uvicorn server and its own listening socket on the same address (``SO_REUSEPORT``): the
kernel spreads new connections across them, so there is no balancer of ours in the path. The
model workers are not duplicated: the ``tagserve serve`` process (this module's supervisor)
starts one per model, and every HTTP worker sends its batches there over a Unix socket
(:mod:`tagserve.service.inference.model_worker`). The supervisor serves no requests; it forwards
SIGTERM/SIGINT to every HTTP worker (each drains as a single server does), replaces a worker
that dies unexpectedly, and exits 0 once every worker has drained.
"""

from __future__ import annotations

import contextlib
import logging
import math
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import time
from multiprocessing.connection import wait
from pathlib import Path
from types import FrameType

from tagserve.processes import die_with_parent
from tagserve.service.inference.model_worker import WorkerAddress

log = logging.getLogger(__name__)


def available_cpus() -> int:
    """The cores this process may use: its CPU affinity, capped by a cgroup CPU quota (a
    container's ``--cpus`` or a Kubernetes CPU limit), at least 1."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    quota = cgroup_cpu_quota()
    cores = cores or 1
    return max(1, min(cores, math.ceil(quota)) if quota else cores)


def cgroup_cpu_quota(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """CPUs allowed by the cgroup quota (v2 ``cpu.max`` or v1 ``cfs_quota_us``), or None."""
    with contextlib.suppress(OSError, ValueError):
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    with contextlib.suppress(OSError, ValueError):
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return None if quota_us <= 0 else quota_us / period_us
    return None


def prepare_metrics_dir() -> Path:
    """Put prometheus-client into multiprocess mode for this process and its children, with
    an empty directory: ``PROMETHEUS_MULTIPROC_DIR`` if set (wiped), else a new one. Must run
    before ``prometheus_client`` is imported."""
    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if given:
        directory = Path(given)
        if directory.is_dir():
            shutil.rmtree(directory)
        directory.mkdir(parents=True)
    else:
        directory = Path(tempfile.mkdtemp(prefix="tagserve-metrics-"))
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    return directory


def reserve_port(host: str, port: int) -> socket.socket:
    """Bind (not listen) a ``SO_REUSEPORT`` socket: it fixes the port (port 0 picks one)
    for every worker, and holds it while workers come and go."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(address)
    return sock


class Supervisor:
    """Runs ``count`` HTTP workers on ``host:port`` until a signal drains them."""

    def __init__(
        self, host: str, count: int, reserved: socket.socket, models: list[WorkerAddress]
    ) -> None:
        self.host = host
        self.port = reserved.getsockname()[1]
        self.count = count
        self.models = models
        self._context = multiprocessing.get_context("spawn")
        self._workers: list[multiprocessing.process.BaseProcess] = []
        self._stopping = 0

    def _start(self, index: int) -> multiprocessing.process.BaseProcess:
        process = self._context.Process(
            target=run_http_worker,
            args=(index, self.host, self.port, self.models),
            name=f"tagserve-http-{index}",
        )
        process.start()
        return process

    def _signal(self, sig: int, frame: FrameType | None) -> None:
        self._stopping += 1
        log.info("signal %d: passing it to %d HTTP workers", sig, len(self._workers))
        for process in self._workers:
            if process.is_alive() and process.pid is not None:
                with contextlib.suppress(OSError):
                    os.kill(process.pid, sig)

    def run(self) -> int:
        """Serve until signalled; 0 when every worker drained cleanly."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._signal)
        self._workers = [self._start(index) for index in range(self.count)]
        log.info("serving on port %d with %d HTTP workers", self.port, self.count)
        while True:
            live = [p for p in self._workers if p.exitcode is None]
            if not live:
                break
            wait([p.sentinel for p in live], timeout=0.5)
            if self._stopping:
                continue
            for index, process in enumerate(self._workers):
                if process.exitcode is not None:
                    log.warning(
                        "HTTP worker %d (pid %s) ended with %s; replacing it",
                        index,
                        process.pid,
                        process.exitcode,
                    )
                    _forget_process_metrics(process.pid)
                    self._workers[index] = self._start(index)
        codes = [p.exitcode for p in self._workers]
        log.info("HTTP workers stopped: exit codes %s", codes)
        return 0 if all(code == 0 for code in codes) else 1


def _forget_process_metrics(pid: int | None) -> None:
    """A dead HTTP worker's live gauges must not be summed any more. (Imported here: this
    module is imported before the multiprocess directory is chosen.)"""
    from prometheus_client import multiprocess

    if pid is not None:
        multiprocess.mark_process_dead(pid)


def run_http_worker(index: int, host: str, port: int, models: list[WorkerAddress]) -> None:
    """One HTTP worker's main (in a spawned process): load the model cards, connect to the
    shared model workers, and serve on its own ``SO_REUSEPORT`` socket until signalled."""
    started = time.monotonic()
    die_with_parent()
    # Signals come from the supervisor only: a terminal's Ctrl+C reaches the whole process
    # group, and a second signal on top of the forwarded one would skip the drain.
    os.setpgrp()
    from tagserve.service.api.app import create_app
    from tagserve.service.inference.registry import load_models
    from tagserve.service.metrics import Metrics
    from tagserve.service.runtime.serve import DrainingServer, configure_logging, uvicorn_config
    from tagserve.service.settings import Settings

    settings = Settings()
    configure_logging(settings)
    metrics = Metrics()
    loaded = load_models(settings, metrics, remote={m.model: m for m in models})
    app = create_app(settings, loaded, metrics)
    sock = reserve_port(host, port)
    sock.listen(2048)
    server = DrainingServer(uvicorn_config(settings, app), app, settings.drain_notice_s)
    log.info(
        "HTTP worker %d (pid %d) loaded in %.1f s", index, os.getpid(), time.monotonic() - started
    )
    server.run(sockets=[sock])
    for model in loaded.values():
        model.close_worker()
