"""One HTTP worker's uvicorn server: the settings every worker shares, and the drain on
SIGTERM (``/health`` turns 503 first, so a load balancer stops routing here)."""

from __future__ import annotations

import logging
import time
from types import FrameType
from typing import TYPE_CHECKING, Any

import uvicorn

from tagserve.service.runtime.timeouts import timed_protocol
from tagserve.service.settings import Settings

if TYPE_CHECKING:
    from fastapi import FastAPI

    from tagserve.service.runtime.model_feed import ModelFollower

log = logging.getLogger(__name__)


class DrainingServer(uvicorn.Server):
    """On SIGTERM/SIGINT: /health turns 503 at once, serving goes on for ``notice_s`` (so a
    load balancer stops routing here), then uvicorn closes the listener and waits for
    in-flight requests (up to its graceful-shutdown timeout). A second signal stops at once.

    ``heartbeat``, if given (a shared double), gets the monotonic time at every tick of the
    event loop (uvicorn ticks every 0.1 s), so the supervisor can tell a hung loop; and
    ``follower``, if given, applies a reload of the models at the next tick."""

    def __init__(
        self,
        config: uvicorn.Config,
        app: FastAPI,
        notice_s: float,
        heartbeat: Any = None,
        follower: ModelFollower | None = None,
    ) -> None:
        super().__init__(config)
        self.tagserve_app = app
        self.notice_s = notice_s
        self.heartbeat = heartbeat
        self.follower = follower
        self.drain_started: float | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.drain_started is not None:
            log.warning("signal %d again: stopping now", sig)
            self.should_exit = True
            self.force_exit = True
            return
        self.tagserve_app.state.status = "draining"
        self.drain_started = time.monotonic()
        log.info("signal %d: draining (notice %.1fs, then graceful shutdown)", sig, self.notice_s)

    async def on_tick(self, counter: int) -> bool:
        now = time.monotonic()
        if self.heartbeat is not None:
            self.heartbeat.value = now
        if self.follower is not None:
            self.follower.tick()
        started = self.drain_started
        if started is not None and now - started >= self.notice_s:
            self.should_exit = True
        return await super().on_tick(counter)


def configure_logging(settings: Settings) -> None:
    """One log format for the server and its workers."""
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(settings.log_level.upper())


def uvicorn_config(settings: Settings, app: FastAPI, **where: object) -> uvicorn.Config:
    """The uvicorn settings every HTTP worker shares (``where``: host and port, when uvicorn
    binds the socket itself)."""
    return uvicorn.Config(
        app,
        http=timed_protocol(settings.header_timeout_s, settings.body_timeout_s),
        log_level=settings.log_level,
        timeout_graceful_shutdown=int(settings.drain_timeout_s) or None,
        timeout_keep_alive=settings.keep_alive_s,
        # Past this many open connections (or requests in progress) a new request gets
        # uvicorn's 503 before any of our code runs.
        limit_concurrency=settings.max_connections,
        access_log=False,
        **where,  # type: ignore[arg-type]
    )
