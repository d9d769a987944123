"""``tagserve serve --workers N``: several HTTP processes on one port share the model
workers, /metrics counts every process's requests, SIGTERM drains them all, and the default
follows the cores (and cgroup quota) the process may use."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tagserve.service.runtime.system import (
    MetricsDirError,
    available_cpus,
    cgroup_cpu_quota,
    prepare_metrics_dir,
)
from tests.live_server import ROOT, start_server
from tests.processes import child_pids, worker_pids
from tests.prometheus import sample_value

SENTENCE = "Angela Merkel met Emmanuel Macron in Berlin on Tuesday."


def _tag_counter(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    if 'route="/tag"' not in text:
        return 0.0
    return sample_value(text, "tagserve_requests_total", route="/tag", status="200")


@pytest.mark.slow
def test_two_workers_serve_share_metrics_and_drain(shipped_models_dir: Path) -> None:
    server = start_server(shipped_models_dir, workers="2", models='["ner"]', log_level="warning")
    try:
        before = _tag_counter(server.url)
        answered_by: dict[str, int] = {}
        first = None
        for _ in range(300):  # each on a fresh connection: the kernel picks the worker
            response = httpx.post(f"{server.url}/tag", json={"text": SENTENCE}, timeout=30)
            assert response.status_code == 200
            worker = response.headers["x-tagserve-worker"]
            answered_by[worker] = answered_by.get(worker, 0) + 1
            first = first or response.json()
            assert response.json() == first  # every worker gives the same answer
        assert len(answered_by) == 2, answered_by
        assert _tag_counter(server.url) - before == 300
        # The two HTTP workers and one model worker are children of the server process; the
        # HTTP workers reach the model over a socket, so there is no second model process.
        workers = {int(pid) for pid in answered_by}
        assert workers <= set(child_pids(server.process.pid))
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(30) == 0
        for pid in workers:
            assert (
                not Path(f"/proc/{pid}").exists()
                or "zombie" in Path(f"/proc/{pid}/status").read_text()
            )
    finally:
        server.stop()


def test_cgroup_v2_quota_is_read(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cgroup_cpu_quota(tmp_path) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_quota(tmp_path) is None


def test_cgroup_v1_quota_is_read(tmp_path: Path) -> None:
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("200000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpu_quota(tmp_path) == 2.0
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert cgroup_cpu_quota(tmp_path) is None


def test_default_workers_follow_the_cpu_affinity() -> None:
    assert 1 <= available_cpus() <= len(os.sched_getaffinity(0))


@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_a_bad_worker_count_is_refused_in_one_line(value: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tagserve", "serve", "--workers", value],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 2
    assert "--workers" in result.stderr and value in result.stderr


def test_a_bad_worker_setting_is_refused_in_one_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tagserve", "serve"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, "TAGSERVE_WORKERS": "0"},
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "tagserve: error: setting TAGSERVE_WORKERS: Input should be greater than or equal to 1"
    ]


@pytest.mark.slow
def test_a_killed_shared_model_worker_is_replaced_for_every_http_worker(
    shipped_models_dir: Path,
) -> None:
    server = start_server(shipped_models_dir, workers="2", models='["ner"]', log_level="error")
    try:
        http_workers: set[int] = set()
        for _ in range(200):
            response = httpx.post(f"{server.url}/tag", json={"text": SENTENCE}, timeout=30)
            http_workers.add(int(response.headers["x-tagserve-worker"]))
            if len(http_workers) == 2:
                break
        assert len(http_workers) == 2
        (model_worker,) = [
            pid for pid in worker_pids(server.process.pid) if pid not in http_workers
        ]
        os.kill(model_worker, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while httpx.get(f"{server.url}/health", timeout=5).status_code != 200:
            assert time.monotonic() < deadline, "no new model worker within 60 s"
            time.sleep(0.1)
        answered_by = set()
        for _ in range(200):
            response = httpx.post(f"{server.url}/tag", json={"text": SENTENCE}, timeout=30)
            assert response.status_code == 200
            answered_by.add(int(response.headers["x-tagserve-worker"]))
            if answered_by == http_workers:
                break
        assert answered_by == http_workers  # both HTTP workers reach the new model worker
        text = httpx.get(f"{server.url}/metrics", timeout=10).text
        assert sample_value(text, "tagserve_model_worker_restarts_total", model="ner") == 1
    finally:
        server.stop()


def test_a_given_metrics_directory_loses_only_prometheus_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    given = tmp_path / "metrics"
    given.mkdir()
    (given / "counter_123.db").write_bytes(b"stale samples of an earlier server")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(given))
    assert prepare_metrics_dir() == (given, False) and list(given.iterdir()) == []
    # A mistyped path that names a folder of the user's: refused, and nothing deleted.
    (given / "thesis.tex").write_text("years of work")
    (given / "gauge_1.db").write_bytes(b"")
    with pytest.raises(
        MetricsDirError, match=r"holds files that are not prometheus-client's \(thesis.tex\)"
    ):
        prepare_metrics_dir()
    assert sorted(p.name for p in given.iterdir()) == ["gauge_1.db", "thesis.tex"]
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
    made, made_here = prepare_metrics_dir()
    try:
        assert made_here and made.is_dir() and list(made.iterdir()) == []
        assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(made)
    finally:
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        made.rmdir()
