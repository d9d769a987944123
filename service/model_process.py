"""A model's predictor in a child process, so model work and HTTP work never share a GIL.

In one process the event loop and the model thread take turns on the GIL: every torch or
NumPy call the model makes releases it, and getting it back can mean waiting out the event
loop's switch interval (5 ms) while HTTP traffic keeps it busy. Under load a 64-sentence
batch then took three times as long as on a quiet process. A child process has a GIL of
its own.

The child is forked after the model is loaded, before the server starts any thread or
socket, so it shares the weights' pages with the parent and starts in milliseconds. Batches
travel as JSON over a pipe (no pickle).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import signal
import threading
from multiprocessing.connection import Connection
from typing import Any

import orjson
import torch

from tagserve.model.predictor import Predictor, TaggedSentence


class ModelProcessError(RuntimeError):
    """The child failed on a batch, or is gone."""


class ModelProcess:
    """A :class:`SentenceTagger` whose work happens in a forked child."""

    def __init__(self, predictor: Predictor, name: str, torch_threads: int) -> None:
        context = multiprocessing.get_context("fork")
        self._connection, child_end = context.Pipe()
        self._process = context.Process(
            target=_serve,
            args=(predictor, child_end, torch_threads),
            name=f"tagserve-model-{name}",
            daemon=True,
        )
        self._process.start()
        child_end.close()
        self.name = name
        self._lock = threading.Lock()

    @property
    def alive(self) -> bool:
        """Whether the child is still running."""
        return self._process.is_alive()

    @property
    def pid(self) -> int | None:
        """The child's process id."""
        return self._process.pid

    def predict(self, sentences: list[list[str]]) -> list[TaggedSentence]:
        """Tag a batch in the child (blocking; the batcher calls this from its worker thread)."""
        with self._lock:
            try:
                self._connection.send_bytes(orjson.dumps(sentences))
                reply: Any = orjson.loads(self._connection.recv_bytes())
            except (EOFError, OSError) as error:
                raise ModelProcessError(f"model process {self.name} is gone: {error}") from None
        if isinstance(reply, dict):
            raise ModelProcessError(f"model process {self.name}: {reply['error']}")
        return [TaggedSentence(tags, scores) for tags, scores in reply]

    def close(self, timeout: float = 5.0) -> None:
        """Ask the child to exit; kill it if it does not within ``timeout`` seconds."""
        with contextlib.suppress(OSError), self._lock:
            self._connection.send_bytes(b"")
        self._process.join(timeout)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(timeout)
        self._connection.close()


def _serve(predictor: Predictor, connection: Connection, torch_threads: int) -> None:
    # The parent owns shutdown (it drains first), so signals meant for it must not stop us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    torch.set_num_threads(torch_threads)
    while True:
        try:
            request = connection.recv_bytes()
        except (EOFError, OSError):
            return
        if not request:
            return
        try:
            tagged = predictor.predict(orjson.loads(request))
            reply = orjson.dumps([[t.tags, t.scores] for t in tagged])
        except Exception as error:  # reported to the parent, which fails only this batch
            reply = orjson.dumps({"error": f"{type(error).__name__}: {error}"})
        connection.send_bytes(reply)
