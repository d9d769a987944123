"""Each model in a worker process of its own, shared by every HTTP worker of the server.

Why a process: in one process the event loop and the model take turns on the GIL, and under
HTTP load a batch took three times as long as on a quiet process. A worker has a GIL of its
own. Why shared: a model worker holds torch and the weights (about 300 MB); one per HTTP
worker would cost that again for every added core, so ``tagserve serve --workers N`` starts
one worker per model and every HTTP worker reaches it over a Unix socket.

How: :class:`ModelWorker`, owned by the ``tagserve serve`` process, starts the worker with
``spawn``, never ``fork``: the server has already run torch ops while loading, and GNU OpenMP
is not fork-safe, so a forked child could block forever in its first parallel op. The worker
loads the artifact itself and sets its torch thread count before any torch op, then listens
on a Unix socket (:mod:`multiprocessing.connection`, with an authentication key). Batches
that arrive together from several HTTP workers are tagged together. :class:`ModelClient`
(one per model in each HTTP worker) sends a batch and waits at most the batch timeout; a
worker that overruns it is killed by the client that noticed, and a worker that dies is
replaced by its owner, which counts the restart. The batch in flight fails with
:class:`WorkerUnavailable` (answered 503 with ``Retry-After``); the next one waits for the new
worker. Sentences and answers cross the process boundary as plain lists of strings and floats.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import pickle
import queue
import secrets
import signal
import socket
import struct
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Client, Connection, Listener, wait
from pathlib import Path
from typing import TYPE_CHECKING

from tagserve.model.tagged import TaggedSentence
from tagserve.processes import die_with_parent
from tagserve.service.errors import WorkerStartError, WorkerUnavailable

if TYPE_CHECKING:
    from tagserve.model.predictor import Predictor

log = logging.getLogger(__name__)
# Test hook: a worker whose batch holds this token sleeps past any timeout (a hung model).
HANG_TOKEN_VARIABLE = "TAGSERVE_TEST_HANG_TOKEN"
Row = tuple[list[str], list[float], list[tuple[str, float]] | None]


@dataclass(frozen=True)
class WorkerAddress:
    """Where an HTTP worker reaches a model worker: picklable, so it can be handed to
    spawned HTTP workers."""

    model: str
    socket_path: str
    authkey: bytes


class ModelClient:
    """A model worker as this process reaches it: batches go out and answers come in on the
    event loop (:meth:`predict_async`, for the batcher), and :attr:`alive` answers /health
    over a connection of its own, so a health check never waits behind a batch."""

    def __init__(
        self, address: WorkerAddress, *, batch_timeout_s: float, start_timeout_s: float = 120.0
    ) -> None:
        self.address = address
        self.name = address.model
        self.batch_timeout_s = batch_timeout_s
        self.start_timeout_s = start_timeout_s
        # The health connection and the pid of the worker it reached.
        self._connection: Connection | None = None
        self.pid: int | None = None
        self._lock = threading.Lock()
        # The event loop's batch connection, with the pid of the worker it reached.
        self._stream: tuple[asyncio.StreamReader, asyncio.StreamWriter, int] | None = None
        self._stream_lock: asyncio.Lock | None = None

    def _drop(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(OSError):
                self._connection.close()
        self._connection = None

    @property
    def alive(self) -> bool:
        """Whether a loaded worker is there now (false while one is being replaced). Never
        waits: /health calls it on the event loop."""
        with self._lock:
            if self._connection is not None and _pid_alive(self.pid):
                return True
            # Not connected yet, or the worker was replaced since: connect now, and keep the
            # connection (a handshake per /health would cost more than the check).
            self._drop()
            dialled = self._dial_waiting(wait_s=0)
            if dialled is None:
                return False
            self._connection, self.pid = dialled
            return True

    async def predict_async(self, sentences: list[list[str]]) -> list[TaggedSentence]:
        """Tag a batch in the worker, waiting at most the batch timeout (then the worker is
        killed and the batch gets :class:`WorkerUnavailable`). The batch goes out and the
        answer comes in through asyncio, with no thread hand-off per batch (a thread's
        wake-ups cost the HTTP process more CPU than the socket I/O). Only connecting, which
        may wait for a worker being replaced, runs in a thread."""
        if self._stream_lock is None:
            self._stream_lock = asyncio.Lock()
        async with self._stream_lock:
            reader, writer, pid = await self._open_stream()
            data = pickle.dumps(sentences, protocol=pickle.HIGHEST_PROTOCOL)
            try:
                # multiprocessing.connection's framing: a 4-byte big-endian length, then the
                # pickle (the worker reads it with Connection.recv).
                writer.write(struct.pack("!i", len(data)) + data)
                async with asyncio.timeout(self.batch_timeout_s):
                    (size,) = struct.unpack("!i", await reader.readexactly(4))
                    if size == -1:  # an answer over 2 GiB: the length follows as 8 bytes
                        (size,) = struct.unpack("!Q", await reader.readexactly(8))
                    ok, payload = pickle.loads(await reader.readexactly(size))
            except TimeoutError:
                problem = f"overran the batch timeout ({self.batch_timeout_s:g} s)"
                log.warning("model %s: worker %s; killing it", self.name, problem)
                _kill_pid(pid)
                self._close_stream()
                raise WorkerUnavailable(self.name, problem) from None
            except (OSError, EOFError, asyncio.IncompleteReadError):
                self._close_stream()
                raise WorkerUnavailable(self.name, "died") from None
            except BaseException:
                self._close_stream()  # cancelled mid-batch: the stream is out of step
                raise
        if not ok:
            raise payload
        return [TaggedSentence(tags, scores, intents) for tags, scores, intents in payload]

    async def _open_stream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, int]:
        if self._stream is not None and _pid_alive(self._stream[2]):
            return self._stream
        self._close_stream()
        loop = asyncio.get_running_loop()
        dialled = await loop.run_in_executor(None, self._dial_waiting, self.start_timeout_s)
        if dialled is None:
            raise WorkerUnavailable(self.name, "is restarting")
        connection, pid = dialled
        # The authenticated socket, taken over from the Connection (closed: only asyncio uses it).
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, fileno=os.dup(connection.fileno()))
        connection.close()
        reader, writer = await asyncio.open_unix_connection(sock=sock)
        self._stream = (reader, writer, pid)
        return self._stream

    def _dial_waiting(self, wait_s: float) -> tuple[Connection, int] | None:
        """A new authenticated connection, retried for up to ``wait_s`` seconds."""
        deadline = time.monotonic() + wait_s
        while True:
            try:
                return _dial(self.address)
            except (OSError, EOFError):
                if time.monotonic() >= deadline:
                    return None
                time.sleep(0.05)

    def _close_stream(self) -> None:
        if self._stream is not None:
            # RuntimeError: its event loop has already been closed (the server has stopped).
            with contextlib.suppress(RuntimeError):
                self._stream[1].close()
        self._stream = None

    def close(self, timeout: float = 0.0) -> None:
        """Close the connections (the worker itself belongs to its :class:`ModelWorker`)."""
        with self._lock:
            self._drop()
        self._close_stream()


class ModelWorker:
    """Owns one model's worker process: starts it, replaces it whenever it dies (or is killed
    for overrunning a batch), counts the restarts, and stops it. It also tags, through a
    :class:`ModelClient` of its own, for the HTTP worker that runs in the owner's process."""

    def __init__(
        self,
        name: str,
        path: Path,
        *,
        torch_threads: int,
        batch_size: int,
        cache_words: int,
        batch_timeout_s: float,
        device: str = "cpu",
        start_timeout_s: float = 120.0,
        on_restart: Callable[[], None] | None = None,
    ) -> None:
        self.name = name
        directory = tempfile.mkdtemp(prefix="tagserve-models-")
        self.address = WorkerAddress(name, f"{directory}/{name}.sock", secrets.token_bytes(32))
        self._initargs = (str(path), torch_threads, batch_size, cache_words, device)
        self.batch_timeout_s = batch_timeout_s
        self.start_timeout_s = start_timeout_s
        self._on_restart = on_restart
        self.restarts = 0
        self._closed = False
        self._lock = threading.Lock()
        self._process: multiprocessing.process.BaseProcess | None = None
        self._ready: Connection | None = None
        self.pid: int | None = None
        self.client = ModelClient(
            self.address, batch_timeout_s=batch_timeout_s, start_timeout_s=start_timeout_s
        )
        self._launch()

    def _launch(self) -> None:
        """Start a new worker process; it loads the model while the caller goes on."""
        context = multiprocessing.get_context("spawn")
        receiver, sender = context.Pipe(duplex=False)
        process = context.Process(
            target=_serve_model,
            args=(self.address, sender, *self._initargs),
            name=f"tagserve-model-{self.name}",
            daemon=True,
        )
        process.start()
        sender.close()
        self._process, self._ready = process, receiver

    def _await_loaded(self) -> bool:
        """Wait (bounded) for the current process to say it is listening."""
        process, ready = self._process, self._ready
        assert process is not None and ready is not None
        try:
            if ready.poll(self.start_timeout_s):
                self.pid = ready.recv()
                return True
        except (OSError, EOFError):
            pass
        return False

    def wait_ready(self) -> None:
        """Block until the worker has loaded its model, or raise :class:`WorkerStartError`."""
        if not self._await_loaded():
            process = self._process
            problem = "its process died" if process and not process.is_alive() else "timed out"
            self.close(timeout=0)
            raise WorkerStartError(f"model {self.name}: the worker failed to start ({problem})")
        threading.Thread(target=self._watch, name=f"watch-{self.name}", daemon=True).start()

    @property
    def alive(self) -> bool:
        """Whether a loaded worker answers now (false while one is being replaced)."""
        return not self._closed and self.client.alive

    async def predict_async(self, sentences: list[list[str]]) -> list[TaggedSentence]:
        """Tag a batch in the worker from the event loop (see :meth:`ModelClient.predict_async`)."""
        return await self.client.predict_async(sentences)

    def _watch(self) -> None:
        """Replace the worker whenever its process ends, for as long as this owner is open."""
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
            while not self._closed and not self._await_loaded():
                log.warning("model %s: the new worker failed to start; trying again", self.name)
                time.sleep(1.0)
                with self._lock:
                    if not self._closed:
                        self._launch()
            log.info("model %s: new worker ready (pid %s)", self.name, self.pid)

    def close(self, timeout: float = 5.0) -> None:
        """Stop the worker: let it finish its batch for up to ``timeout`` seconds, then kill it."""
        with self._lock:
            self._closed = True
            process = self._process
        self.client.close()
        if process is not None and process.is_alive():
            # A stop message: the worker finishes the batches before it, then ends.
            with contextlib.suppress(OSError, EOFError):
                control, _ = _dial(self.address)
                with contextlib.closing(control):
                    control.send(None)
                    process.join(timeout)
            if process.is_alive():
                process.kill()
                process.join(5)
        with contextlib.suppress(OSError):
            os.unlink(self.address.socket_path)
            os.rmdir(os.path.dirname(self.address.socket_path))


def _dial(address: WorkerAddress) -> tuple[Connection, int]:
    """Connect (authenticated) to the model worker at ``address``; it answers with its pid."""
    connection = Client(address.socket_path, "AF_UNIX", address.authkey)
    try:
        return connection, connection.recv()
    except BaseException:
        connection.close()
        raise


def _pid_alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_pid(pid: int | None) -> None:
    if pid is not None:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


# In the worker process.
def _serve_model(
    address: WorkerAddress,
    ready: Connection,
    path: str,
    torch_threads: int,
    batch_size: int,
    cache_words: int,
    device: str = "cpu",
) -> None:
    """The worker's main: threads first, then the model, then answer batches until told to
    stop. One thread accepts connections, one reads each, and this one tags what they queued,
    merging batches that arrived together."""
    # The server owns shutdown (it drains first, then stops us): its signals are not ours.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    die_with_parent()
    import torch

    from tagserve.model.artifact import load
    from tagserve.model.predictor import Predictor

    torch.set_num_threads(torch_threads)
    predictor = Predictor(load(Path(path), device), batch_size=batch_size, cache_words=cache_words)
    hang_token = os.environ.get(HANG_TOKEN_VARIABLE) or None
    with contextlib.suppress(FileNotFoundError):
        os.unlink(address.socket_path)  # a socket file left by the worker this one replaces
    listener = Listener(address.socket_path, "AF_UNIX", authkey=address.authkey)
    work: queue.Queue[tuple[Connection, list[list[str]]] | None] = queue.Queue()
    threading.Thread(target=_accept, args=(listener, work), daemon=True).start()
    ready.send(os.getpid())
    ready.close()
    while (item := work.get()) is not None:
        items = [item]
        while len(items) < 64:
            try:
                extra = work.get_nowait()
            except queue.Empty:
                break
            if extra is None:
                work.put(None)
                break
            items.append(extra)
        _answer(predictor, items, hang_token)
    listener.close()


def _accept(listener: Listener, work: queue.Queue) -> None:  # type: ignore[type-arg]
    while True:
        try:
            connection = listener.accept()
        except (OSError, EOFError):
            continue  # a client that failed the handshake, or the listener closed
        connection.send(os.getpid())
        threading.Thread(target=_read, args=(connection, work), daemon=True).start()


def _read(connection: Connection, work: queue.Queue) -> None:  # type: ignore[type-arg]
    """Queue each batch a client sends; ``None`` (from the owner) asks the worker to stop."""
    with contextlib.suppress(OSError, EOFError):
        while (batch := connection.recv()) is not None:
            work.put((connection, batch))
        work.put(None)


def _answer(
    predictor: Predictor, items: list[tuple[Connection, list[list[str]]]], hang_token: str | None
) -> None:
    """Tag the queued batches together; if that fails, each alone, so that only the batch
    that caused an error gets it."""
    sentences = [sentence for _, batch in items for sentence in batch]
    if hang_token is not None and any(hang_token in sentence for sentence in sentences):
        time.sleep(3600)
    try:
        rows = _rows(predictor, sentences)
    except Exception as error:
        if len(items) > 1:
            for item in items:
                _answer(predictor, [item], hang_token)
        else:
            _send(items[0][0], (False, error))
        return
    start = 0
    for connection, batch in items:
        _send(connection, (True, rows[start : start + len(batch)]))
        start += len(batch)


def _rows(predictor: Predictor, sentences: list[list[str]]) -> list[Row]:
    return [(t.tags, t.scores, t.intents) for t in predictor.predict(sentences)]


def _send(connection: Connection, message: tuple[bool, object]) -> None:
    try:
        connection.send(message)
    except OSError:
        pass  # the client has gone (it timed out or its HTTP worker stopped)
    except Exception:  # an error that does not pickle: send its text instead
        with contextlib.suppress(OSError):
            connection.send((False, RuntimeError(repr(message[1]))))
