"""Only model workers run torch: the ``tagserve serve`` process and its HTTP workers never
import it (about 150 MB and a second and a half of start-up each), checked in the live
processes' memory maps, with a model worker as the positive control, and by ``sys.modules``
in a process that builds the HTTP side as an HTTP worker does."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.live_server import ROOT, start_server
from tests.processes import worker_pids

pytestmark = pytest.mark.slow


def _maps_torch(pid: int) -> bool:
    return "libtorch" in Path(f"/proc/{pid}/maps").read_text()


def test_the_supervisor_and_http_workers_never_load_torch(shipped_models_dir: Path) -> None:
    server = start_server(shipped_models_dir, workers="2", models='["ner"]', log_level="error")
    try:
        http_workers: set[int] = set()
        for _ in range(300):
            response = httpx.post(f"{server.url}/tag", json={"text": "Harry Potter"}, timeout=30)
            assert response.status_code == 200
            http_workers.add(int(response.headers["x-tagserve-worker"]))
            if len(http_workers) == 2:
                break
        assert len(http_workers) == 2
        model_workers = [p for p in worker_pids(server.process.pid) if p not in http_workers]
        assert len(model_workers) == 1
        assert _maps_torch(model_workers[0])  # the check sees torch where it is loaded
        for pid in (server.process.pid, *http_workers):
            assert not _maps_torch(pid), f"process {pid} has torch loaded"
    finally:
        assert server.stop() == 0


def test_building_the_http_side_imports_no_torch(tiny_artifact: Path) -> None:
    script = f"""
import sys
from fastapi.testclient import TestClient
from tagserve.service.api.app import create_app
from tagserve.service.inference.protocol import WorkerAddress
from tagserve.service.inference.registry import serve_remote
from tagserve.service.metrics import Metrics
from tagserve.service.runtime import serve, supervisor
from tagserve.service.settings import Settings

settings = Settings(models_dir={str(tiny_artifact.parent)!r}, default_model="tiny")
metrics = Metrics()
address = WorkerAddress("tiny", "/nonexistent/tiny.sock", b"k" * 32)
app = create_app(settings, serve_remote(settings, metrics, {{"tiny": address}}), metrics)
with TestClient(app) as client:
    assert client.get("/models").json()["models"][0]["name"] == "tiny"
    assert client.get("/livez").status_code == 200
print(sorted(m for m in sys.modules if m == "torch" or m.startswith("torch.")))
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"
