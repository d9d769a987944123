"""A model worker as an HTTP worker reaches it: batches out and answers in on the event loop
(for the batcher), and a health connection of its own, so /health never waits behind a batch.
Speaks :mod:`tagserve.service.inference.protocol`; the process itself belongs to its owner
(:mod:`tagserve.service.inference.owner`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import threading
import time

from tagserve.model.tagged import TaggedSentence
from tagserve.processes import pid_alive
from tagserve.service.errors import WorkerUnavailable
from tagserve.service.inference import protocol
from tagserve.service.inference.protocol import ProtocolError, WorkerAddress

log = logging.getLogger(__name__)


class RemoteModelError(Exception):
    """The model raised on a batch in its worker (the worker goes on); the batcher retries
    the batch's requests one by one so that only the one that caused it fails."""


class BatchTimeout(WorkerUnavailable):
    """The worker overran the batch timeout on a batch and was killed (it is being
    replaced); the batcher finds out which request hangs it by retrying them one by one."""


class ModelClient:
    """One model's worker, reached from this process over its Unix socket."""

    def __init__(
        self, address: WorkerAddress, *, batch_timeout_s: float, start_timeout_s: float = 120.0
    ) -> None:
        self.address = address
        self.name = address.model
        self.batch_timeout_s = batch_timeout_s
        self.start_timeout_s = start_timeout_s
        # The health connection and the pid of the worker it reached.
        self._health: socket.socket | None = None
        self.pid: int | None = None
        self._lock = threading.Lock()
        # The event loop's batch connection, with the pid of the worker it reached.
        self._stream: tuple[asyncio.StreamReader, asyncio.StreamWriter, int] | None = None
        self._stream_lock: asyncio.Lock | None = None

    @property
    def alive(self) -> bool:
        """Whether a loaded worker is there now (false while one is being replaced). Never
        waits: /health calls it on the event loop."""
        with self._lock:
            if self._health is not None and pid_alive(self.pid):
                return True
            # Not connected yet, or the worker was replaced since: connect now, and keep the
            # connection (a handshake per /health would cost more than the check).
            self._drop_health()
            dialled = self._dial_waiting(wait_s=0)
            if dialled is None:
                return False
            self._health, self.pid = dialled
            return True

    async def predict_async(self, sentences: list[list[str]]) -> list[TaggedSentence]:
        """Tag a batch in the worker, waiting at most the batch timeout (then the worker is
        killed and the batch gets :class:`BatchTimeout`). Only connecting, which may wait for
        a worker being replaced, runs in a thread."""
        if self._stream_lock is None:
            self._stream_lock = asyncio.Lock()
        async with self._stream_lock:
            reader, writer, pid = await self._open_stream()
            try:
                writer.write(protocol.frame({"sentences": sentences}))
                async with asyncio.timeout(self.batch_timeout_s):
                    answer = await protocol.receive_async(reader)
            except TimeoutError:
                problem = f"overran the batch timeout ({self.batch_timeout_s:g} s)"
                log.warning("model %s: worker %s; killing it", self.name, problem)
                kill_pid(pid)
                self._close_stream()
                raise BatchTimeout(self.name, problem) from None
            except (OSError, ProtocolError):
                self._close_stream()
                raise WorkerUnavailable(self.name, "died") from None
            except BaseException:
                self._close_stream()  # cancelled mid-batch: the stream is out of step
                raise
        if "error" in answer:
            raise RemoteModelError(answer["error"])
        return [
            TaggedSentence(tags, scores, None if intents is None else [tuple(i) for i in intents])
            for tags, scores, intents in answer["rows"]
        ]

    async def _open_stream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, int]:
        if self._stream is not None and pid_alive(self._stream[2]):
            return self._stream
        self._close_stream()
        loop = asyncio.get_running_loop()
        dialled = await loop.run_in_executor(None, self._dial_waiting, self.start_timeout_s)
        if dialled is None:
            raise WorkerUnavailable(self.name, "is restarting")
        sock, pid = dialled
        reader, writer = await asyncio.open_unix_connection(sock=sock)
        self._stream = (reader, writer, pid)
        return self._stream

    def _dial_waiting(self, wait_s: float) -> tuple[socket.socket, int] | None:
        """A new connection past the handshake, retried for up to ``wait_s`` seconds."""
        deadline = time.monotonic() + wait_s
        while True:
            try:
                return protocol.dial(self.address)
            except (OSError, ProtocolError):
                if time.monotonic() >= deadline:
                    return None
                time.sleep(0.05)

    def _drop_health(self) -> None:
        if self._health is not None:
            self._health.close()
        self._health = None

    def _close_stream(self) -> None:
        if self._stream is not None:
            # RuntimeError: its event loop has already been closed (the server has stopped).
            with contextlib.suppress(RuntimeError):
                self._stream[1].close()
        self._stream = None

    def close(self, timeout: float = 0.0) -> None:
        """Close the connections (the worker itself belongs to its owner)."""
        with self._lock:
            self._drop_health()
        self._close_stream()


def kill_pid(pid: int | None) -> None:
    """SIGKILL, if the process is still there."""
    if pid is not None:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
