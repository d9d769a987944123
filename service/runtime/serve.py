"""``tagserve serve``: check the models (failing fast, in one line), start their worker
processes, then run uvicorn: in this process (``--workers 1``), or in N HTTP worker
processes that share the model workers. This process never imports torch, except in the
single-process mode that runs models in its own threads (``TAGSERVE_MODEL_PROCESS=false``).
SIGHUP reloads the models folder while serving, in every mode
(:mod:`tagserve.service.runtime.reload`)."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import shutil
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError
from pydantic_settings import SettingsError

from tagserve.model.artifact_files import ArtifactError
from tagserve.service.errors import WorkerStartError
from tagserve.service.runtime.http_server import DrainingServer, configure_logging, uvicorn_config
from tagserve.service.runtime.supervisor import Supervisor
from tagserve.service.runtime.system import (
    MetricsDirError,
    available_cpus,
    listening_socket,
    make_run_dir,
    prepare_metrics_dir,
)
from tagserve.service.settings import SERVER_PID_ENV, Settings

if TYPE_CHECKING:  # imported in run(): prometheus-client only once its mode is chosen
    from tagserve.service.metrics import Metrics
    from tagserve.service.runtime.reload import ModelFleet


def _settings_or_exit() -> Settings:
    try:
        return Settings()
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        sys.exit(f"tagserve: error: setting TAGSERVE_{field.upper()}: {first['msg']}")
    except SettingsError as error:
        # A value pydantic-settings could not even decode (its message names the field).
        sys.exit(f"tagserve: error: {error}")


@contextlib.contextmanager
def _run_dir(count: int) -> Iterator[Path]:
    """This server's private folder (model sockets, the models manifest, and metrics files
    when several processes share them; a directory the user set is used even with one
    worker, since prometheus-client then reads files), removed however serving ends."""
    run_dir = make_run_dir()
    try:
        if count > 1 or os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            try:
                prepare_metrics_dir(run_dir)
            except (MetricsDirError, OSError) as error:
                sys.exit(f"tagserve: error: {error}")
        yield run_dir
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def run(host: str = "127.0.0.1", port: int = 8000, workers: int | None = None) -> None:
    """Start serving, or exit with status 1 and one line naming the bad setting or file.

    ``workers``: HTTP worker processes (default ``TAGSERVE_WORKERS``, else the cores this
    process may use). However serving ends (drained, forced by a second signal, or failed),
    no worker process outlives this function.
    """
    settings = _settings_or_exit()
    count = workers or settings.workers or available_cpus()
    with _run_dir(count) as run_dir:
        # Imported only now: prometheus-client picks its multiprocess mode at import.
        from tagserve.service.metrics import Metrics
        from tagserve.service.runtime.reload import ProcessFleet, ThreadFleet

        metrics = Metrics()
        in_threads = count == 1 and not settings.model_process
        fleet: ModelFleet
        if in_threads:
            fleet = ThreadFleet(settings, metrics)
        else:
            fleet = ProcessFleet(settings, metrics, run_dir)
        # From here on SIGHUP reloads the models folder (one asked for while loading runs
        # once serving has begun) instead of ending the server.
        signal.signal(signal.SIGHUP, fleet.request_reload)
        # Where a process of this server (a training job) sends its SIGHUP to reload.
        os.environ[SERVER_PID_ENV] = str(os.getpid())
        try:
            fleet.start()  # torch-free checks of every card first; a load error ends here
        except (ArtifactError, WorkerStartError) as error:
            sys.exit(f"tagserve: error: {error}")
        configure_logging(settings)
        try:
            if count == 1:
                _serve_here(settings, metrics, fleet, host, port)
            else:
                with listening_socket(host, port) as listener:
                    supervisor = Supervisor(
                        count,
                        listener,
                        fleet.feed(),
                        heartbeat_timeout_s=settings.heartbeat_timeout_s,
                        on_restart=metrics.http_worker_restarts.inc,
                    )
                    fleet.applied = supervisor.applied
                    fleet.follow()
                    code = supervisor.run()
                if code:
                    sys.exit(code)
        finally:
            # Whoever starts a model worker stops it: here, after every HTTP worker is done.
            fleet.close()


def _serve_here(
    settings: Settings, metrics: Metrics, fleet: ModelFleet, host: str, port: int
) -> None:
    """One HTTP worker: uvicorn in this process, following the fleet's reloads as a spawned
    worker follows the supervisor's."""
    from tagserve.service.api.app import create_app
    from tagserve.service.runtime.model_feed import ModelFollower, follow_manifest
    from tagserve.service.runtime.reload import ThreadFleet

    feed = fleet.feed().for_worker(multiprocessing.get_context("spawn"))
    if isinstance(fleet, ThreadFleet):
        generation, models = fleet.source({})
        app = create_app(settings, models, metrics)
        follower = ModelFollower(app, feed, fleet.source, generation)
    else:
        app, follower = follow_manifest(settings, metrics, feed)
    fleet.applied = lambda generation: bool(feed.applied.value >= generation)
    fleet.follow()
    config = uvicorn_config(settings, app, host=host, port=port)
    # uvicorn routes SIGINT and SIGTERM to handle_exit.
    DrainingServer(config, app, settings.drain_notice_s, follower=follower).run()
