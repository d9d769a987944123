"""The HTTP-worker supervisor: a worker whose event loop is stuck is killed and replaced
(and counted), replacements that keep dying wait longer each time, and a server leaves no
folder behind, even after it was SIGKILLed (the next start sweeps it)."""

from __future__ import annotations

import os
import signal
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from tagserve.service.runtime.supervisor import BACKOFF_S, restart_delay
from tagserve.service.runtime.system import RUN_PREFIX, make_run_dir
from tests.live_server import start_server
from tests.processes import child_pids
from tests.prometheus import sample_value

SENTENCE = "Angela Merkel met Emmanuel Macron in Berlin on Tuesday."


def test_replacements_that_die_young_wait_longer_each_time() -> None:
    delays = [restart_delay(n) for n in range(10)]
    assert delays[0] == 0.0  # a worker that lived is replaced at once
    assert delays[1:5] == [0.5, 1.0, 2.0, 4.0]
    assert max(delays) == BACKOFF_S[1] == delays[-1]


def test_folders_of_dead_servers_are_swept(tmp_path: Path) -> None:
    dead = Path(tempfile.gettempdir()) / f"{RUN_PREFIX}999999999-x"
    (dead / "tagserve-models-abc").mkdir(parents=True)
    alive = Path(tempfile.mkdtemp(prefix=f"{RUN_PREFIX}{os.getpid()}-"))
    made = make_run_dir()
    try:
        assert not dead.exists() and alive.exists() and made.name.startswith(RUN_PREFIX)
    finally:
        alive.rmdir()
        made.rmdir()


@pytest.mark.slow
def test_a_stuck_event_loop_is_killed_and_replaced(shipped_models_dir: Path) -> None:
    server = start_server(
        shipped_models_dir,
        workers="2",
        models='["ner"]',
        log_level="error",
        heartbeat_timeout_s="2",
        test_loop_hang_token="FREEZE",
    )
    try:
        before = set(child_pids(server.process.pid))
        with pytest.raises(httpx.HTTPError):  # its worker's loop blocks for an hour
            httpx.post(f"{server.url}/tag", json={"text": "FREEZE now"}, timeout=4)
        deadline = time.monotonic() + 20
        restarts = 0.0
        while time.monotonic() < deadline:
            try:
                text = httpx.get(f"{server.url}/metrics", timeout=2).text
                restarts = sample_value(text, "tagserve_http_worker_restarts_total")
            except (httpx.HTTPError, AssertionError):  # not written yet
                pass
            if restarts >= 1:
                break
            time.sleep(0.2)
        assert restarts == 1
        assert len(before - set(child_pids(server.process.pid))) == 1  # the stuck one is gone
        for _ in range(20):  # and the server answers from both workers again
            answer = httpx.post(f"{server.url}/tag", json={"text": SENTENCE}, timeout=10)
            assert answer.status_code == 200
    finally:
        assert server.stop() == 0


@pytest.mark.slow
def test_no_folder_is_left_behind(shipped_models_dir: Path) -> None:
    """Other servers may run beside this test: it looks only at its own servers' folders
    (named after their pids)."""

    def folders_of(pid: int) -> list[Path]:
        return list(Path(tempfile.gettempdir()).glob(f"{RUN_PREFIX}{pid}-*"))

    server = start_server(shipped_models_dir, workers="2", models='["ner"]', log_level="error")
    (run_dir,) = folders_of(server.process.pid)
    assert len(list(run_dir.glob("tagserve-models-*"))) == 1  # the model socket's folder
    assert len(list(run_dir.glob("tagserve-metrics-*"))) == 1
    assert server.stop() == 0
    assert not run_dir.exists()
    # SIGKILL: nobody cleans up, and the next server sweeps the folder away.
    killed = start_server(shipped_models_dir, workers="1", models='["ner"]', log_level="error")
    os.kill(killed.process.pid, signal.SIGKILL)
    killed.process.wait(10)
    (left,) = folders_of(killed.process.pid)
    again = start_server(shipped_models_dir, workers="1", models='["ner"]', log_level="error")
    try:
        assert not left.exists()
    finally:
        assert again.stop() == 0
    assert not folders_of(again.process.pid)
