"""The wire protocol between an HTTP worker and a model worker, owned here for both ends.

A connection is a Unix stream socket in a directory only this user can enter. Every message
is a frame: a 4-byte big-endian length, then that many bytes of JSON (orjson). The first
frame each way is the handshake: the client sends ``{"protocol": VERSION, "key": KEY}`` (the
worker's secret, in hex, compared in constant time), the worker answers ``{"protocol":
VERSION, "pid": PID}``, or ``{"error": ...}`` and closes. Then the client sends batches,
``{"sentences": [[token, ...], ...]}``, and gets one answer per batch, in order:
``{"rows": [[tags, scores, intents or null], ...]}`` or ``{"error": "Type: message"}``. The
owner's ``{"stop": true}`` asks the worker to finish what it has and exit.

Why not :mod:`multiprocessing.connection`: its framing and pickle are CPython internals that
the asyncio side would have to re-implement by hand, and pickle runs code on load. JSON
frames are a few lines at each end, versioned, and carry nothing but data.
"""

from __future__ import annotations

import asyncio
import hmac
import socket
import struct
from dataclasses import dataclass
from typing import Any

import orjson

VERSION = 1
# A frame's length prefix; a batch of 4,096 sentences of 200 tokens is ~10 MB of JSON.
_HEADER = struct.Struct("!I")
MAX_FRAME_BYTES = 256 * 1024 * 1024


class ProtocolError(Exception):
    """The other end sent something that is not a frame of this protocol (or closed)."""


@dataclass(frozen=True)
class WorkerAddress:
    """Where a model worker listens and the secret it expects: picklable, so the
    supervisor can hand it to spawned HTTP workers."""

    model: str
    socket_path: str
    key: bytes


def frame(message: dict[str, Any]) -> bytes:
    """One message as the bytes of its frame."""
    data = orjson.dumps(message)
    return _HEADER.pack(len(data)) + data


def parse(data: bytes) -> dict[str, Any]:
    """A frame's payload as a message, or :class:`ProtocolError`."""
    try:
        message = orjson.loads(data)
    except orjson.JSONDecodeError as error:
        raise ProtocolError(f"a frame that is not JSON ({error})") from None
    if not isinstance(message, dict):
        raise ProtocolError(f"a frame that is not a JSON object ({type(message).__name__})")
    return message


def _length(header: bytes) -> int:
    (size,) = _HEADER.unpack(header)
    if size > MAX_FRAME_BYTES:
        raise ProtocolError(f"a frame of {size} bytes, over the limit of {MAX_FRAME_BYTES}")
    return size


def _receive_exactly(sock: socket.socket, size: int) -> bytes:
    chunks = []
    while size:
        chunk = sock.recv(min(size, 1 << 20))
        if not chunk:
            raise ProtocolError("the connection closed mid-frame")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def receive(sock: socket.socket) -> dict[str, Any]:
    """The next message on a blocking socket."""
    return parse(_receive_exactly(sock, _length(_receive_exactly(sock, _HEADER.size))))


async def receive_async(reader: asyncio.StreamReader) -> dict[str, Any]:
    """The next message on an asyncio stream."""
    try:
        size = _length(await reader.readexactly(_HEADER.size))
        return parse(await reader.readexactly(size))
    except asyncio.IncompleteReadError:
        raise ProtocolError("the connection closed mid-frame") from None


def hello(address: WorkerAddress) -> bytes:
    """The client's first frame."""
    return frame({"protocol": VERSION, "key": address.key.hex()})


def check_hello(message: dict[str, Any], key: bytes) -> str | None:
    """Why the worker refuses this handshake, or None to accept it."""
    if message.get("protocol") != VERSION:
        return f"protocol version {message.get('protocol')!r}; this worker speaks {VERSION}"
    given = message.get("key")
    if not isinstance(given, str) or not hmac.compare_digest(given.encode(), key.hex().encode()):
        return "wrong key"
    return None


def dial(address: WorkerAddress, timeout: float = 5.0) -> tuple[socket.socket, int]:
    """A connection to the worker at ``address`` that has passed the handshake, with the
    worker's pid (raises :class:`OSError` or :class:`ProtocolError`)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(address.socket_path)
        sock.sendall(hello(address))
        answer = receive(sock)
        if "error" in answer or not isinstance(answer.get("pid"), int):
            raise ProtocolError(f"the worker refused the handshake: {answer.get('error')}")
        sock.settimeout(None)
        return sock, answer["pid"]
    except BaseException:
        sock.close()
        raise
