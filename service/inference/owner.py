"""The owner of one model's worker process: starts it, replaces it whenever it dies (or is
killed for overrunning a batch), counts the restarts, and stops it.

Why a process: in one process the event loop and the model take turns on the GIL, and under
HTTP load a batch took three times as long as on a quiet process. Why one shared by every
HTTP worker: a worker holds torch and the weights (about 300 MB), so one per HTTP worker
would cost that again for every added core. The owner runs in the ``tagserve serve``
process, which never imports torch: the worker loads the artifact itself and a load error
comes back over the ready pipe as the line ``tagserve serve`` exits with.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import secrets
import tempfile
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from pathlib import Path

from tagserve.model.card import Precision
from tagserve.service.errors import WorkerStartError
from tagserve.service.inference import protocol
from tagserve.service.inference.protocol import ProtocolError, WorkerAddress
from tagserve.service.inference.worker import serve_model

log = logging.getLogger(__name__)
# A replacement that fails to load is tried again after this long, doubling up to the cap.
RESTART_BACKOFF_S = (1.0, 30.0)


class WorkerOwner:
    """One model's worker process, kept running until :meth:`close`."""

    def __init__(
        self,
        name: str,
        path: Path,
        *,
        torch_threads: int,
        batch_size: int,
        cache_words: int,
        device: str = "cpu",
        precision: Precision | None = None,
        start_timeout_s: float = 120.0,
        on_restart: Callable[[], None] | None = None,
        run_dir: Path | None = None,
    ) -> None:
        self.name = name
        # A private directory (mode 0700) per model, inside the server's run directory when
        # there is one: only this user can reach the socket.
        self._directory = tempfile.mkdtemp(prefix="tagserve-models-", dir=run_dir)
        self.address = WorkerAddress(
            name, f"{self._directory}/{name}.sock", secrets.token_bytes(32)
        )
        self._initargs = (str(path), torch_threads, batch_size, cache_words, device, precision)
        self.start_timeout_s = start_timeout_s
        self._on_restart = on_restart
        self.restarts = 0
        self._closed = False
        self._lock = threading.Lock()
        self._process: multiprocessing.process.BaseProcess | None = None
        self._ready: Connection | None = None
        self.pid: int | None = None
        self._launch()

    def _launch(self) -> None:
        """Start a new worker process; it loads the model while the caller goes on."""
        context = multiprocessing.get_context("spawn")
        receiver, sender = context.Pipe(duplex=False)
        process = context.Process(
            target=serve_model,
            args=(self.address, sender, *self._initargs),
            name=f"tagserve-model-{self.name}",
            daemon=True,
        )
        process.start()
        sender.close()
        self._process, self._ready = process, receiver

    def _await_loaded(self) -> str | None:
        """Wait (bounded) for the current process to say it is listening; why not, if not."""
        process, ready = self._process, self._ready
        assert process is not None and ready is not None
        try:
            if not ready.poll(self.start_timeout_s):
                return f"timed out after {self.start_timeout_s:g} s"
            status, value = ready.recv()
        except (OSError, EOFError):
            return "its process died while loading"
        if status == "ready":
            self.pid = value
            return None
        # An artifact's error names its file already; anything else gets the model's name.
        return str(value) if status == "artifact" else f"model {self.name}: {value}"

    def wait_ready(self) -> None:
        """Block until the worker has loaded its model, or raise :class:`WorkerStartError`
        with the worker's own reason (the bad file and field, for a broken artifact)."""
        problem = self._await_loaded()
        if problem is not None:
            self.close(timeout=0)
            raise WorkerStartError(problem)
        threading.Thread(target=self._watch, name=f"watch-{self.name}", daemon=True).start()

    def _watch(self) -> None:
        """Replace the worker whenever its process ends, for as long as this owner is open;
        a replacement that fails to load is retried with a doubling delay."""
        while not self._closed:
            process = self._process
            assert process is not None
            wait([process.sentinel], timeout=0.5)
            if process.is_alive() or self._closed:
                continue
            with self._lock:
                if self._closed:
                    return
                self.restarts += 1
                log.warning(
                    "model %s: worker (pid %s) ended with %s; replacing it (restart %d)",
                    self.name,
                    process.pid,
                    process.exitcode,
                    self.restarts,
                )
                if self._on_restart is not None:
                    self._on_restart()
                self._launch()
            delay, cap = RESTART_BACKOFF_S
            while not self._closed and (problem := self._await_loaded()) is not None:
                log.warning(
                    "model %s: the new worker failed (%s); again in %g s", self.name, problem, delay
                )
                time.sleep(delay)
                delay = min(2 * delay, cap)
                with self._lock:
                    if not self._closed:
                        self._launch()
            log.info("model %s: new worker ready (pid %s)", self.name, self.pid)

    def close(self, timeout: float = 5.0) -> None:
        """Stop the worker: let it finish its batches for up to ``timeout`` seconds, then
        kill it; remove its socket and directory."""
        with self._lock:
            already, self._closed = self._closed, True
            process = self._process
        if already:
            return
        if process is not None and process.is_alive():
            # A stop message: the worker finishes the batches before it, then ends.
            with contextlib.suppress(OSError, ProtocolError):
                control, _ = protocol.dial(self.address, timeout=1.0)
                with contextlib.closing(control):
                    control.sendall(protocol.frame({"stop": True}))
                    process.join(timeout)
            if process.is_alive():
                process.kill()
                process.join(5)
        # Separately: the worker may have removed its socket already.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.address.socket_path)
        with contextlib.suppress(OSError):
            os.rmdir(self._directory)
