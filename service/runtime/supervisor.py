"""``tagserve serve --workers N``: N HTTP worker processes on one port, kept running.

One Python event loop serves about one core. Each HTTP worker is a spawned process with its
own uvicorn server, accepting on the one listening socket this process made: a worker takes
a connection when its loop is free, so a worker whose loop hangs gets no new ones. The
model workers are not duplicated: the ``tagserve serve`` process starts one per model
(:mod:`tagserve.service.inference.owner`), and every HTTP worker reaches it over a Unix
socket; which worker serves which model, the HTTP workers read from the manifest
(:mod:`tagserve.service.runtime.model_feed`), and follow it when a reload changes it. The
supervisor serves no requests and never imports torch. It forwards SIGTERM and
SIGINT to every HTTP worker (each drains as a single server does), replaces a worker that
dies (with a doubling delay when replacements die young) or whose event loop has not ticked
for ``heartbeat_timeout_s`` (killed first), counts each replacement, and exits 0 once every
worker has drained.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import wait
from types import FrameType
from typing import TYPE_CHECKING, Any

from tagserve.processes import die_with_parent
from tagserve.service.runtime.http_server import DrainingServer, configure_logging, uvicorn_config

# Not imported here at run time: prometheus-client (which model_feed brings) must be imported
# only once the multiprocess directory is chosen.
if TYPE_CHECKING:
    from tagserve.service.runtime.model_feed import ModelFeed

log = logging.getLogger(__name__)
# A worker that ends within this long of starting counts as dying young: its replacement
# waits 0.5 s, then 1, 2, ... up to the cap, so a worker that cannot start does not spin.
YOUNG_S = 10.0
BACKOFF_S = (0.5, 30.0)


@dataclass
class _Slot:
    process: multiprocessing.process.BaseProcess
    heartbeat: Any  # a shared double: the worker's last event-loop tick (monotonic)
    started: float
    feed: ModelFeed | None = None
    young_deaths: int = 0
    restart_at: float | None = None


class Supervisor:
    """Runs ``count`` HTTP workers on ``listener`` until a signal drains them."""

    def __init__(
        self,
        count: int,
        listener: socket.socket,
        feed: ModelFeed | None,
        *,
        heartbeat_timeout_s: float,
        on_restart: Callable[[], None] | None = None,
    ) -> None:
        self.listener = listener
        self.port = listener.getsockname()[1]
        self.count = count
        self.feed = feed
        self.heartbeat_timeout_s = heartbeat_timeout_s
        self._on_restart = on_restart
        self._context = multiprocessing.get_context("spawn")
        self._slots: list[_Slot] = []
        # Held while a worker is started and put in its slot: applied() sees every worker
        # that may have read an older manifest.
        self._slots_lock = threading.Lock()
        self._stopping = 0
        self.restarts = 0

    def _start(self, index: int) -> _Slot:
        # A fresh start counts as a tick: the worker has until the timeout to load and serve.
        heartbeat = self._context.Value("d", time.monotonic() + 60.0, lock=False)
        feed = self.feed.for_worker(self._context) if self.feed else None
        process = self._context.Process(
            target=run_http_worker,
            args=(index, self.listener, feed, heartbeat),
            name=f"tagserve-http-{index}",
        )
        process.start()
        return _Slot(process, heartbeat, time.monotonic(), feed)

    def applied(self, generation: int) -> bool:
        """Whether every live HTTP worker serves the models of ``generation`` (one that is
        dead now is replaced by one that reads the newest manifest)."""
        with self._slots_lock:
            slots = list(self._slots)
        return all(
            slot.feed.applied.value >= generation
            for slot in slots
            if slot.feed is not None and slot.process.exitcode is None
        )

    def _signal(self, sig: int, frame: FrameType | None) -> None:
        self._stopping += 1
        log.info("signal %d: passing it to %d HTTP workers", sig, len(self._slots))
        for slot in self._slots:
            if slot.process.is_alive() and slot.process.pid is not None:
                with contextlib.suppress(OSError):
                    os.kill(slot.process.pid, sig)

    def run(self) -> int:
        """Serve until signalled; 0 when every worker drained cleanly."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._signal)
        with self._slots_lock:
            self._slots = [self._start(index) for index in range(self.count)]
        log.info("serving on port %d with %d HTTP workers", self.port, self.count)
        while True:
            live = [s.process for s in self._slots if s.process.exitcode is None]
            if not live and self._stopping:
                break
            if live:
                wait([p.sentinel for p in live], timeout=0.5)
            else:
                time.sleep(0.1)  # every worker is waiting out its restart delay
            if not self._stopping:
                for index in range(len(self._slots)):
                    self._look_after(index)
        codes = [s.process.exitcode for s in self._slots]
        log.info("HTTP workers stopped: exit codes %s", codes)
        # A worker still starting when the signal came (uvicorn not yet handling it) ends by
        # the signal itself: stopped as asked, not a failure.
        asked = {0, -signal.SIGTERM, -signal.SIGINT} if self._stopping else {0}
        return 0 if all(code in asked for code in codes) else 1

    def _look_after(self, index: int) -> None:
        """Kill a worker whose loop stopped ticking; replace a dead one when its delay is up."""
        slot, now = self._slots[index], time.monotonic()
        process = slot.process
        if process.exitcode is None:
            if now - slot.heartbeat.value > self.heartbeat_timeout_s and process.pid:
                log.error(
                    "HTTP worker %d (pid %s): event loop silent for %.0f s; killing it",
                    index,
                    process.pid,
                    now - slot.heartbeat.value,
                )
                with contextlib.suppress(OSError):
                    os.kill(process.pid, signal.SIGKILL)
            return
        if slot.restart_at is None:
            young = now - slot.started < YOUNG_S
            slot.young_deaths = slot.young_deaths + 1 if young else 0
            delay = restart_delay(slot.young_deaths)
            slot.restart_at = now + delay
            log.warning(
                "HTTP worker %d (pid %s) ended with %s; replacing it in %.1f s",
                index,
                process.pid,
                process.exitcode,
                delay,
            )
            _forget_process_metrics(process.pid)
        if now >= slot.restart_at:
            young_deaths = slot.young_deaths
            with self._slots_lock:
                self._slots[index] = self._start(index)
            self._slots[index].young_deaths = young_deaths
            self.restarts += 1
            if self._on_restart is not None:
                self._on_restart()


def restart_delay(young_deaths: int) -> float:
    """Seconds before replacing a worker, after ``young_deaths`` replacements in a row that
    died within :data:`YOUNG_S` of starting: none after a worker that lived, then doubling."""
    first, cap = BACKOFF_S
    return min(first * 2 ** (young_deaths - 1), cap) if young_deaths else 0.0


def _forget_process_metrics(pid: int | None) -> None:
    """A dead HTTP worker's live gauges must not be summed any more. (Imported here: this
    module is imported before the multiprocess directory is chosen.)"""
    from prometheus_client import multiprocess

    if pid is not None:
        multiprocess.mark_process_dead(pid)


def run_http_worker(
    index: int, listener: socket.socket, feed: ModelFeed, heartbeat: Any = None
) -> None:
    """One HTTP worker's main (in a spawned process): read the manifest, connect to the
    shared model workers, and serve on the shared listening socket until signalled,
    following each reload of the models."""
    started = time.monotonic()
    die_with_parent()
    # Signals come from the supervisor only: a terminal's Ctrl+C reaches the whole process
    # group, and a second signal on top of the forwarded one would skip the drain.
    os.setpgrp()
    # Reloading is the supervisor's: a SIGHUP sent to a worker by mistake must not end it.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    from tagserve.service.metrics import Metrics
    from tagserve.service.runtime.model_feed import follow_manifest
    from tagserve.service.settings import Settings

    settings = Settings()
    # Below the model workers (nice 0): when HTTP and model work share the cores, an
    # overloaded HTTP worker then takes only what the model leaves. First, so that every
    # thread this process starts inherits it (Linux nice is per thread).
    os.nice(settings.http_nice)
    configure_logging(settings)
    metrics = Metrics()
    app, follower = follow_manifest(settings, metrics, feed)
    config = uvicorn_config(settings, app)
    server = DrainingServer(config, app, settings.drain_notice_s, heartbeat, follower)
    log.info(
        "HTTP worker %d (pid %d) loaded in %.1f s", index, os.getpid(), time.monotonic() - started
    )
    server.run(sockets=[listener])
