"""The model worker's wire protocol at both ends: frames round-trip, a malformed frame, a
wrong key or version closes that connection only, and a worker that cannot load its model
says why (file and field) to its owner."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
from pathlib import Path

import pytest

from tagserve.service.errors import WorkerStartError
from tagserve.service.inference import protocol
from tagserve.service.inference.client import ModelClient
from tagserve.service.inference.owner import WorkerOwner
from tagserve.service.inference.protocol import ProtocolError, WorkerAddress


def test_frames_round_trip_through_both_readers() -> None:
    message = {"sentences": [["Grüße", "aus", "東京", "🙂"], []]}
    left, right = socket.socketpair()
    with left, right:
        left.sendall(protocol.frame(message) * 2)
        assert protocol.receive(right) == message

        async def read_async() -> dict[str, object]:
            reader, writer = await asyncio.open_connection(sock=right)
            try:
                return await protocol.receive_async(reader)
            finally:
                writer.close()

        assert asyncio.run(read_async()) == message


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (struct.pack("!I", 5) + b"[1,2]", "not a JSON object"),
        (struct.pack("!I", 3) + b"{x}", "not JSON"),
        (struct.pack("!I", protocol.MAX_FRAME_BYTES + 1), "over the limit"),
        (struct.pack("!I", 10) + b"{}", "closed mid-frame"),
    ],
)
def test_a_malformed_frame_is_a_protocol_error(data: bytes, problem: str) -> None:
    left, right = socket.socketpair()
    with right:
        left.sendall(data)
        left.close()
        with pytest.raises(ProtocolError, match=problem):
            protocol.receive(right)


def test_the_handshake_checks_version_and_key() -> None:
    key = b"k" * 32
    assert protocol.check_hello({"protocol": protocol.VERSION, "key": key.hex()}, key) is None
    assert "wrong key" in str(protocol.check_hello({"protocol": 1, "key": "00"}, key))
    assert "version 99" in str(protocol.check_hello({"protocol": 99, "key": key.hex()}, key))


@pytest.mark.slow
def test_a_worker_survives_bad_clients_and_keeps_serving(tiny_artifact: Path) -> None:
    owner = WorkerOwner("tiny", tiny_artifact, torch_threads=1, batch_size=4, cache_words=10)
    try:
        owner.wait_ready()
        path = owner.address.socket_path
        # A wrong key: refused, in a frame, and closed.
        wrong = WorkerAddress("tiny", path, b"x" * 32)
        with pytest.raises(ProtocolError, match="wrong key"):
            protocol.dial(wrong)
        # Garbage instead of a handshake, and a frame that breaks off: that connection ends.
        for garbage in (b"GET / HTTP/1.1\r\n\r\n", struct.pack("!I", 1000) + b"{"):
            with socket.socket(socket.AF_UNIX) as sock:
                sock.connect(path)
                sock.sendall(garbage)
                sock.shutdown(socket.SHUT_WR)
                sock.settimeout(5)
                # Closed by the worker (a reset when our bytes were left unread).
                with contextlib.suppress(ConnectionResetError):
                    assert sock.recv(100) == b""
        # A batch that is not one gets an error answer; the next batch is tagged.
        sock, pid = protocol.dial(owner.address)
        with sock:
            assert pid == owner.pid
            sock.sendall(protocol.frame({"sentences": "Harry"}))
            assert "a batch must be a list of token lists" in protocol.receive(sock)["error"]
            sock.sendall(protocol.frame({"sentences": [["Harry", "Potter"]]}))
            (row,) = protocol.receive(sock)["rows"]
            assert len(row[0]) == 2 and len(row[1]) == 2
        client = ModelClient(owner.address, batch_timeout_s=10)
        assert len(asyncio.run(client.predict_async([["a"], ["b", "c"]]))) == 2
        assert owner.restarts == 0
    finally:
        owner.close()


@pytest.mark.slow
def test_a_worker_that_cannot_load_names_the_file(tiny_artifact: Path, tmp_path: Path) -> None:
    broken = tmp_path / "tiny"
    broken.mkdir()
    for item in tiny_artifact.iterdir():
        (broken / item.name).write_bytes(item.read_bytes())
    config = json.loads((broken / "config.json").read_text())
    config["hidden_size"] = config["hidden_size"] + 1  # the weights no longer fit
    (broken / "config.json").write_text(json.dumps(config))
    owner = WorkerOwner("tiny", broken, torch_threads=1, batch_size=4, cache_words=10)
    with pytest.raises(WorkerStartError) as raised:
        owner.wait_ready()
    message = str(raised.value)
    assert message.startswith("model artifact ") and "weights.safetensors" in message, message
    assert not Path(owner.address.socket_path).parent.exists()
