"""Models appear, change and go in a running server (SIGHUP to ``tagserve serve``) with no
request lost: what the folder listing and the fingerprints see, the manifest the HTTP workers
read, the reload's decisions (loaded, replaced, refused once, retired, the default kept), the
drain of a retired model's queue, and a live server with two HTTP workers under load."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client import generate_latest

from tagserve.model.artifact_files import read_info
from tagserve.service.api.app import create_app, swap_models
from tagserve.service.api.routes import GENERATION_HEADER
from tagserve.service.errors import ShuttingDown
from tagserve.service.inference.catalog import artifact_path, fingerprint, listed
from tagserve.service.inference.manifest import (
    Manifest,
    ManifestModel,
    read_manifest,
    write_manifest,
)
from tagserve.service.inference.protocol import WorkerAddress
from tagserve.service.metrics import Metrics
from tagserve.service.runtime.reload import ThreadFleet
from tagserve.service.settings import Settings
from tests.live_server import LiveServer, start_server
from tests.processes import worker_pids
from tests.prometheus import sample_value

SENTENCE = "Angela Merkel met Emmanuel Macron in Berlin on Tuesday."
RELOAD_LOG = "tagserve.service.runtime.reload"


def copy_in(source: Path, target: Path) -> Path:
    """Copy an artifact in as README says: to a hidden name first, then one rename."""
    temporary = target.with_name(f".{target.name}.tmp")
    shutil.copytree(source, temporary)
    temporary.rename(target)
    return target


def set_version(directory: Path, version: str) -> None:
    """A retrained model's card: metadata.json rewritten (atomically) with a new version."""
    path = directory / "metadata.json"
    temporary = path.with_name(".metadata.json.tmp")
    temporary.write_text(json.dumps({**json.loads(path.read_text()), "version": version}))
    temporary.replace(path)


def break_weights(directory: Path) -> None:
    weights = directory / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:500])


# ---- the folder and the manifest ----------------------------------------------------------


def test_copies_in_progress_are_skipped_and_fingerprints_follow_the_files(
    tiny_artifact: Path, tmp_path: Path
) -> None:
    models = tiny_artifact.parent
    shutil.copytree(tiny_artifact, models / ".tiny2.tmp")  # still being written
    settings = Settings(models_dir=models, default_model="tiny")
    assert listed(settings) == ["tiny"]
    before = fingerprint(tiny_artifact)
    assert fingerprint(tiny_artifact) == before  # looking changes nothing
    set_version(tiny_artifact, "0.0.2")
    assert fingerprint(tiny_artifact) != before
    # A symlink is followed when read: switching it is a change, and the path read from is
    # the release itself (a restarted worker reloads the version it was started with).
    first, second = tmp_path / "releases" / "1", tmp_path / "releases" / "2"
    shutil.copytree(tiny_artifact, first)
    shutil.copytree(tiny_artifact, second)
    (models / "linked").symlink_to(first)
    assert artifact_path(settings, "linked") == first
    was = fingerprint(artifact_path(settings, "linked"))
    (models / "linked").unlink()
    (models / "linked").symlink_to(second)
    assert artifact_path(settings, "linked") == second
    assert fingerprint(second) != was


def test_the_manifest_reads_back_as_written_and_is_private(
    shipped_models_dir: Path, tmp_path: Path
) -> None:
    info = read_info(shipped_models_dir / "slots")
    address = WorkerAddress("slots", "/run/tagserve/slots.sock", os.urandom(32))
    manifest = Manifest(3, {"slots": ManifestModel(address, "/models/slots", info)})
    write_manifest(tmp_path / "models.json", manifest)
    assert read_manifest(tmp_path / "models.json") == manifest
    assert stat.S_IMODE((tmp_path / "models.json").stat().st_mode) == 0o600  # holds the key
    assert [p.name for p in tmp_path.iterdir()] == ["models.json"]  # no temporary file left


# ---- the reload's decisions (models in threads: no process started) -----------------------


def _reload_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == RELOAD_LOG]


def test_a_reload_loads_replaces_refuses_once_and_retires(
    tiny_artifact: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=RELOAD_LOG)
    models = tiny_artifact.parent
    settings = Settings(models_dir=models, default_model="tiny", model_process=False)
    metrics = Metrics()
    fleet = ThreadFleet(settings, metrics)
    fleet.start()
    app = create_app(settings, fleet.source({})[1], metrics)

    with TestClient(app) as client:

        def reload() -> tuple[str, dict[str, str]]:
            caplog.clear()
            fleet.reload()
            generation, served = fleet.source(app.state.models)
            client.portal.call(swap_models, app, served, generation)
            answer = client.get("/models")
            versions = {m["name"]: m["version"] for m in answer.json()["models"]}
            return answer.headers[GENERATION_HEADER], versions

        def tag(model: str) -> httpx.Response:
            return client.post("/tag", json={"text": "Harry Potter", "model": model})

        assert client.get("/models").headers[GENERATION_HEADER] == "0"
        copy_in(tiny_artifact, models / "tiny2")
        assert reload() == ("1", {"tiny": "0.0.1", "tiny2": "0.0.1"})
        assert tag("tiny2").status_code == 200
        loaded = f"model tiny2: loaded 0.0.1 from {models / 'tiny2'}"
        assert loaded in _reload_lines(caplog)

        set_version(models / "tiny2", "0.0.2")
        assert reload() == ("2", {"tiny": "0.0.1", "tiny2": "0.0.2"})
        assert "model tiny2: replaced 0.0.1 by 0.0.2" in _reload_lines(caplog)
        assert tag("tiny2").json()["model"]["version"] == "0.0.2"

        # A broken new model, and a broken replacement: both refused, one line each; the
        # old tiny2 goes on serving.
        broken = copy_in(tiny_artifact, models / "broken")
        break_weights(broken)
        (models / "tiny2" / "config.json").write_text("{not json")
        assert reload() == ("3", {"tiny": "0.0.1", "tiny2": "0.0.2"})
        refused = sorted(line for line in _reload_lines(caplog) if "refused" in line)
        assert len(refused) == 2, refused
        assert refused[0].startswith(f"model directory {broken} refused: ")
        assert "weights.safetensors: cannot read weights" in refused[0]
        assert refused[0].endswith("(not served)")
        assert refused[1].startswith(f"model directory {models / 'tiny2'} refused: ")
        assert "config.json: not valid JSON" in refused[1]
        assert refused[1].endswith("(still serving tiny2 0.0.2)")
        assert tag("tiny2").status_code == 200
        assert tag("broken").status_code == 404
        assert reload()[0] == "4"  # unchanged since: not tried, nor logged, again
        assert not [line for line in _reload_lines(caplog) if "refused" in line]

        # Removed: tiny2 is retired; tiny is the default model and goes on serving.
        shutil.rmtree(models / "tiny2")
        shutil.rmtree(tiny_artifact)
        assert reload() == ("5", {"tiny": "0.0.1"})
        lines = _reload_lines(caplog)
        assert "model tiny2: retired 0.0.2 (directory gone)" in lines
        assert sum("it is the default model" in line for line in lines) == 1
        assert tag("tiny").status_code == 200
        missing = tag("tiny2")
        assert missing.status_code == 404 and "'tiny2'" in missing.json()["detail"]
        assert reload()[0] == "6"
        assert not [line for line in _reload_lines(caplog) if "default model" in line]

    text = generate_latest(metrics.registry).decode()
    for outcome, count in [
        ("loaded", 1),
        ("replaced", 1),
        ("refused", 2),
        ("retired", 1),
        ("kept_default", 1),
    ]:
        assert sample_value(text, "tagserve_model_reloads_total", outcome=outcome) == count


async def test_a_retired_model_answers_what_was_queued_on_it(tiny_artifact: Path) -> None:
    models = tiny_artifact.parent
    settings = Settings(models_dir=models, default_model="tiny", model_process=False)
    metrics = Metrics()
    fleet = ThreadFleet(settings, metrics)
    fleet.start()
    app = create_app(settings, None, metrics)
    app.state.models = fleet.source({})[1]  # as the lifespan sets them
    old = app.state.models["tiny"]
    old.batcher.start()
    set_version(tiny_artifact, "0.0.2")
    await asyncio.to_thread(fleet.reload)
    queued = [asyncio.ensure_future(old.batcher.submit([["Harry", "Potter"]])) for _ in range(50)]
    await asyncio.sleep(0)  # every request is on the old model's queue
    generation, served = fleet.source(app.state.models)
    await swap_models(app, served, generation)
    assert all(len(result) == 1 for result in await asyncio.gather(*queued))
    assert app.state.models["tiny"].info.card.version == "0.0.2"
    with pytest.raises(ShuttingDown):  # why a request looks up its model as it queues
        await old.batcher.submit([["Harry"]])
    await app.state.models["tiny"].batcher.close(1.0)


# ---- live servers ------------------------------------------------------------------------


@dataclass
class Answer:
    sent: float
    received: float
    model: str
    status: int  # 0: no HTTP answer at all
    version: str | None
    worker: str | None
    detail: str


class Load:
    """Requests for each model in turn from a thread, each on a new connection (so that every
    HTTP worker gets some), until stopped; bounded in count and time."""

    def __init__(self, url: str, models: list[str], limit: int = 6000, limit_s: float = 600):
        self.url, self.models, self.limit, self.limit_s = url, models, limit, limit_s
        self.answers: list[Answer] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(60)

    def _run(self) -> None:
        deadline = time.monotonic() + self.limit_s
        with httpx.Client(timeout=30, headers={"Connection": "close"}) as client:
            while not self._stop.is_set() and len(self.answers) < self.limit:
                if time.monotonic() > deadline:
                    return
                for model in self.models:
                    self.answers.append(self._one(client, model))
                time.sleep(0.02)

    def _one(self, client: httpx.Client, model: str) -> Answer:
        sent = time.monotonic()
        try:
            response = client.post(f"{self.url}/tag", json={"text": SENTENCE, "model": model})
        except httpx.HTTPError as error:
            return Answer(sent, time.monotonic(), model, 0, None, None, repr(error))
        try:
            body = response.json()
        except ValueError:  # not one of ours (uvicorn's own 503 is plain text)
            body = {"detail": response.text}
        version = body["model"]["version"] if response.status_code == 200 else None
        worker = response.headers.get("x-tagserve-worker")
        detail = str(body.get("detail", ""))
        return Answer(sent, time.monotonic(), model, response.status_code, version, worker, detail)


def reload(server: LiveServer, log: Path, generation: int) -> tuple[float, float]:
    """SIGHUP, then wait (bounded) for the server to log that reload ``generation`` is done:
    the times it was asked for and done."""
    asked = time.monotonic()
    server.process.send_signal(signal.SIGHUP)
    deadline = asked + 180
    while f"reload {generation} done" not in log.read_text(errors="replace"):
        assert server.process.poll() is None, "the server ended"
        assert time.monotonic() < deadline, f"reload {generation} not done in 180 s"
        time.sleep(0.1)
    return asked, time.monotonic()


def models_everywhere(url: str, workers: int) -> dict[str, list[tuple[str, dict[str, str]]]]:
    """``GET /models`` on new connections until each HTTP worker has answered (bounded): its
    answers' generation header and model versions, by worker pid."""
    seen: dict[str, list[tuple[str, dict[str, str]]]] = {}
    for attempt in range(300):
        response = httpx.get(f"{url}/models", headers={"Connection": "close"}, timeout=10)
        assert response.status_code == 200
        versions = {m["name"]: m["version"] for m in response.json()["models"]}
        answer = (response.headers[GENERATION_HEADER], versions)
        seen.setdefault(response.headers["x-tagserve-worker"], []).append(answer)
        if len(seen) == workers and attempt >= 9:
            break
    assert len(seen) == workers, f"only {sorted(seen)} answered"
    return seen


def lines_with(log: Path, *parts: str) -> list[str]:
    return [line for line in log.read_text().splitlines() if all(p in line for p in parts)]


@pytest.mark.slow
def test_models_appear_change_and_go_under_load_in_every_http_worker(
    shipped_models_dir: Path, tmp_path: Path
) -> None:
    models, log = tmp_path / "models", tmp_path / "server.log"
    models.mkdir()
    # Copies of the shipped models, made once: the shipped files may change meanwhile.
    ner_release = shutil.copytree(shipped_models_dir / "ner", tmp_path / "releases" / "ner")
    release = shutil.copytree(shipped_models_dir / "slots", tmp_path / "releases" / "slots")
    shutil.copytree(ner_release, models / "ner")
    (models / "slots").symlink_to(release)  # removed below by deleting the link
    base = read_info(models / "ner").card.version
    slots_version = read_info(models / "slots").card.version
    retrained = f"{base}-retrained"
    server = start_server(models, timeout=180, log=log, workers="2", log_level="info")
    try:
        with Load(server.url, ["ner", "slots", "ner2"]) as load:
            time.sleep(2)
            # 1. A new model, copied in under a hidden name and renamed.
            copy_in(ner_release, models / "ner2")
            hup1, done1 = reload(server, log, 1)
            expected = {"ner": base, "slots": slots_version, "ner2": base}
            for answers in models_everywhere(server.url, 2).values():
                assert answers == [("1", expected)] * len(answers)
            # 2. ner retrained: a new version of its files.
            set_version(models / "ner", retrained)
            hup2, done2 = reload(server, log, 2)
            expected = {**expected, "ner": retrained}
            for answers in models_everywhere(server.url, 2).values():
                assert answers == [("2", expected)] * len(answers)
            # 3. A broken new model, and a broken replacement of ner2: both refused.
            copy_in(ner_release, models / "broken")
            break_weights(models / "broken")
            (models / "ner2" / "config.json").write_text("{not json")
            hup3, done3 = reload(server, log, 3)
            for answers in models_everywhere(server.url, 2).values():
                assert answers == [("3", expected)] * len(answers)
            # 4. slots removed; and ner's directory too, but it is the default: kept.
            (models / "slots").unlink()
            (models / "ner").rename(tmp_path / "ner-gone")
            hup4, done4 = reload(server, log, 4)
            expected = {"ner": retrained, "ner2": base}
            for answers in models_everywhere(server.url, 2).values():
                assert answers == [("4", expected)] * len(answers)
            time.sleep(1)
        answers = load.answers
        http_workers = {a.worker for a in answers if a.worker}
        model_workers = set(worker_pids(server.process.pid)) - {int(w) for w in http_workers}
        metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
    finally:
        code = server.stop()
    assert code == 0

    # Every request got an HTTP answer, and nothing but 200 or the 404s below.
    assert [a for a in answers if a.status not in (200, 404)] == []
    assert len(http_workers) == 2
    for asked, done in [(hup1, done1), (hup2, done2), (hup3, done3), (hup4, done4)]:
        assert sum(asked <= a.sent <= done for a in answers) >= 3  # load through each reload
    ner = [a for a in answers if a.model == "ner"]
    assert {a.status for a in ner} == {200}
    assert {a.version for a in ner if a.received < hup2} == {base}
    assert {a.version for a in ner if a.sent > done2} == {retrained}
    for worker in http_workers:  # the old version served until the new one took over
        versions = [a.version for a in ner if a.worker == worker]
        switch = versions.index(retrained) if retrained in versions else len(versions)
        assert set(versions[:switch]) == {base} and set(versions[switch:]) == {retrained}
    ner2 = [a for a in answers if a.model == "ner2"]
    assert {a.status for a in ner2 if a.received < hup1} == {404}
    assert {(a.status, a.version) for a in ner2 if a.sent > done1} == {(200, base)}
    slots = [a for a in answers if a.model == "slots"]
    assert {a.status for a in slots if a.received < hup4} == {200}
    gone = [a for a in slots if a.sent > done4]
    assert gone and {a.status for a in gone} == {404}
    assert all("unknown model 'slots'" in a.detail for a in gone)

    # One line per change; each refusal once, though the broken files stayed for reload 4.
    assert len(lines_with(log, "model ner2: loaded")) == 1
    assert len(lines_with(log, f"model ner: replaced {base} by {retrained}")) == 1
    assert len(lines_with(log, "model slots: retired")) == 1
    assert len(lines_with(log, "model ner:", "it is the default model")) == 1
    assert len(lines_with(log, f"model directory {models / 'broken'} refused")) == 1
    assert len(lines_with(log, f"model directory {models / 'ner2'} refused")) == 1
    assert "Traceback" not in log.read_text()
    assert "weights.safetensors: cannot read weights" in log.read_text()
    # What is left running: the new ner and ner2; the old ner's and slots' workers stopped.
    assert len(model_workers) == 2
    for outcome, count in [("loaded", 1), ("replaced", 1), ("refused", 2), ("retired", 1)]:
        assert sample_value(metrics, "tagserve_model_reloads_total", outcome=outcome) == count


@pytest.mark.slow
@pytest.mark.parametrize("model_process", ["true", "false"], ids=["model-process", "threads"])
def test_one_http_worker_follows_reloads_too(
    shipped_models_dir: Path, tmp_path: Path, model_process: str
) -> None:
    models, log = tmp_path / "models", tmp_path / "server.log"
    models.mkdir()
    release = shutil.copytree(shipped_models_dir / "slots", tmp_path / "releases" / "slots")
    (models / "slots").symlink_to(release)
    server = start_server(
        models,
        timeout=120,
        log=log,
        default_model="slots",
        model_process=model_process,
        log_level="info",
    )
    try:
        copy_in(release, models / "slots2")
        reload(server, log, 1)
        answer = httpx.get(f"{server.url}/models", timeout=10)
        assert answer.headers[GENERATION_HEADER] == "1"
        assert [m["name"] for m in answer.json()["models"]] == ["slots", "slots2"]
        body = {"text": "flights from boston to denver", "model": "slots2"}
        assert httpx.post(f"{server.url}/tag", json=body, timeout=30).status_code == 200
        shutil.rmtree(models / "slots2")
        reload(server, log, 2)
        assert httpx.post(f"{server.url}/tag", json=body, timeout=30).status_code == 404
        assert [m["name"] for m in httpx.get(f"{server.url}/models").json()["models"]] == ["slots"]
    finally:
        assert server.stop() == 0
