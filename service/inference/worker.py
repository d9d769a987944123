"""The model worker's own main loop, in its spawned process: load the model, then tag the
batches every HTTP worker sends (:mod:`tagserve.service.inference.protocol`), merging those
that arrive together.

This is the only module of the service that imports torch; the owner starts it with
``spawn`` (torch is not fork-safe once it has run ops) and torch threads are set before any
torch op. A load failure goes back over the ready pipe as one line naming the file, so
``tagserve serve`` can exit with it.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import socket
import threading
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeGuard

from tagserve.model.artifact_files import ArtifactError
from tagserve.model.card import Precision
from tagserve.processes import die_with_parent
from tagserve.service.inference import protocol
from tagserve.service.inference.protocol import ProtocolError, WorkerAddress

if TYPE_CHECKING:
    from tagserve.model.predictor import Predictor

# At most this many queued batches (from any number of connections) are tagged together.
MERGE_BATCHES = 64
# A batch from a connection, or the error to answer it with (only the main loop writes
# answers, so that two threads never interleave frames on one socket).
Job = tuple[socket.socket, list[list[str]] | str]


def serve_model(
    address: WorkerAddress,
    ready: Connection,
    path: str,
    torch_threads: int,
    batch_size: int,
    cache_words: int,
    device: str = "cpu",
    precision: Precision | None = None,
) -> None:
    """The worker's main: threads first, then the model, then answer batches until the
    owner says stop. One thread accepts connections, one reads each, and this one tags."""
    # The server owns shutdown (it drains first, then stops us): its signals are not ours.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # SIGHUP means "rescan the models folder" to the server; a hangup sent to the whole
    # process group (a closed terminal) must not kill the model workers.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    die_with_parent()
    try:
        predictor = _load(Path(path), torch_threads, batch_size, cache_words, device, precision)
    except ArtifactError as error:  # names the file and the field: the line to exit with
        ready.send(("artifact", str(error)))
        ready.close()
        return
    except Exception as error:
        ready.send(("error", f"{type(error).__name__}: {error}"))
        ready.close()
        return
    with contextlib.suppress(FileNotFoundError):
        os.unlink(address.socket_path)  # a socket file left by the worker this one replaces
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(address.socket_path)
    listener.listen(256)
    work: queue.Queue[Job | None] = queue.Queue()
    threading.Thread(target=_accept, args=(listener, address, work), daemon=True).start()
    ready.send(("ready", os.getpid()))
    ready.close()
    while (job := work.get()) is not None:
        jobs = [job]
        while len(jobs) < MERGE_BATCHES:
            try:
                extra = work.get_nowait()
            except queue.Empty:
                break
            if extra is None:
                work.put(None)
                break
            jobs.append(extra)
        _answer(predictor, jobs)
    listener.close()


def _load(
    path: Path,
    threads: int,
    batch_size: int,
    cache_words: int,
    device: str,
    precision: Precision | None = None,
) -> Predictor:
    """Threads first, then the artifact, in the precision asked for (else its card's)."""
    import torch

    from tagserve.model.artifact import load
    from tagserve.model.predictor import Predictor
    from tagserve.model.quantize import with_precision

    torch.set_num_threads(threads)
    bundle = load(path, device)
    bundle = with_precision(bundle, precision or bundle.card.precision)
    return Predictor(bundle, batch_size=batch_size, cache_words=cache_words)


def _accept(listener: socket.socket, address: WorkerAddress, work: queue.Queue[Job | None]) -> None:
    while True:
        try:
            connection, _ = listener.accept()
        except OSError:
            return  # the listener closed
        threading.Thread(target=_serve, args=(connection, address, work), daemon=True).start()


def _serve(
    connection: socket.socket, address: WorkerAddress, work: queue.Queue[Job | None]
) -> None:
    """One connection: the handshake, then queue each batch it sends; ``stop`` (from the
    owner) asks the worker to finish and end. A frame that breaks the protocol closes this
    connection only."""
    with contextlib.closing(connection):
        try:
            connection.settimeout(5.0)  # for the handshake
            refusal = protocol.check_hello(protocol.receive(connection), address.key)
            if refusal is not None:
                connection.sendall(protocol.frame({"error": refusal}))
                return
            connection.sendall(protocol.frame({"protocol": protocol.VERSION, "pid": os.getpid()}))
            connection.settimeout(None)
            while True:
                message = protocol.receive(connection)
                if message.get("stop"):
                    work.put(None)
                    return
                sentences = message.get("sentences")
                work.put((connection, sentences if _is_batch(sentences) else _NOT_A_BATCH))
        except (OSError, ProtocolError):
            return


_NOT_A_BATCH = "ProtocolError: a batch must be a list of token lists"


def _is_batch(sentences: Any) -> TypeGuard[list[list[str]]]:
    return isinstance(sentences, list) and all(
        isinstance(s, list) and all(isinstance(w, str) for w in s) for s in sentences
    )


def _answer(predictor: Predictor, jobs: list[Job]) -> None:
    """Tag the queued batches together and answer each, in the order they came. On an error
    every batch of them gets it; each client's batcher then retries its requests one by one,
    so only the request that caused it fails (that rule lives in one place:
    :mod:`tagserve.service.inference.batcher`)."""
    sentences = [sentence for _, batch in jobs if not isinstance(batch, str) for sentence in batch]
    failure = None
    try:
        tagged = predictor.predict(sentences) if sentences else []
        rows = [(t.tags, t.scores, t.intents) for t in tagged]
    except Exception as error:
        failure = protocol.frame({"error": f"{type(error).__name__}: {error}"})
    start = 0
    for connection, batch in jobs:
        if isinstance(batch, str):
            _send(connection, protocol.frame({"error": batch}))
        elif failure is not None:
            _send(connection, failure)
        else:
            _send(connection, protocol.frame({"rows": rows[start : start + len(batch)]}))
            start += len(batch)


def _send(connection: socket.socket, data: bytes) -> None:
    with contextlib.suppress(OSError):  # the client has gone (it timed out or stopped)
        connection.sendall(data)
