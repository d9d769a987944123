"""Training from Label Studio: START_TRAINING (and /train, and every Nth annotation event)
starts a job process that fetches the project's export from a Label Studio stand-in (a
loopback HTTP server in a thread, serving an export built here from records written here),
runs a real ``tagserve train`` with a tiny recipe, and puts the artifact in the models
folder; its state is read back through the routes. The live test does it through ``tagserve
serve``, whose reload then serves the new model."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from tagserve.service.api.app import create_app
from tagserve.service.api.labelstudio import job_files
from tagserve.service.settings import Settings
from tests.annotation_exports import Gold, label_studio_task
from tests.live_server import start_server

TOKEN = "legacy-token-0123"
# A personal access token is a JWT (a refresh token), exchanged for an access token.
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJ0b2tlbl90eXBlIjoicmVmcmVzaCJ9.c2lnbmF0dXJl"
ACCESS = "access-token-for-the-jwt"
# A real tagserve train, small enough to finish in seconds.
TINY_TRAIN = (
    "--vectors none --threads 1 --set training.epochs=1 --set model.hidden_size=8 "
    "--set model.char_channels=4"
)
SENTENCES = [
    ("Angela Merkel visited Paris .", [(0, 13, "PER"), (22, 27, "LOC")]),
    ("Barack Obama flew to Berlin .", [(0, 12, "PER"), (21, 27, "LOC")]),
    ("Google opened an office in Zurich .", [(0, 6, "ORG"), (27, 33, "LOC")]),
    ("Nothing happened on Tuesday .", []),
]
CONFIG = (
    '<View><Labels name="label" toName="text"><Label value="PER"/><Label value="LOC"/>'
    '<Label value="ORG"/></Labels><Text name="text" value="$text"/></View>'
)


def export(tasks: int) -> list[dict[str, Any]]:
    """Label Studio's JSON export of ``tasks`` annotated tasks."""
    golds = [Gold(text, spans) for text, spans in SENTENCES]
    return [label_studio_task(i + 1, golds[i % len(golds)]) for i in range(tasks)]


class FakeLabelStudio:
    """Label Studio's export and token-refresh API on a loopback port: ``exports`` by
    project id, each a JSON value or an HTTP status to fail with; ``gate`` holds an export
    until it is set; ``seen`` records (method, path, Authorization) of every request."""

    def __init__(self) -> None:
        self.exports: dict[int, Any] = {}
        self.gate = threading.Event()
        self.gate.set()
        self.seen: list[tuple[str, str, str]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                fake.seen.append(("POST", self.path, self.headers.get("Authorization", "")))
                if self.path == "/api/token/refresh/" and body.get("refresh") == JWT:
                    self._answer(200, {"access": ACCESS})
                else:
                    self._answer(401, {"detail": "Token is invalid or expired"})

            def do_GET(self) -> None:
                fake.seen.append(("GET", self.path, self.headers.get("Authorization", "")))
                auth = self.headers.get("Authorization", "")
                if auth not in (f"Token {TOKEN}", f"Bearer {ACCESS}"):
                    self._answer(401, {"detail": "Authentication credentials were not provided."})
                    return
                path, _, query = self.path.partition("?")
                parts = path.strip("/").split("/")
                if parts[:2] != ["api", "projects"] or parts[3:] != ["export"]:
                    self._answer(404, {"detail": "Not found."})
                    return
                fake.gate.wait(60)
                found = fake.exports.get(int(parts[2]), 404)
                if isinstance(found, int):
                    self._answer(found, {"detail": f"status {found}"})
                else:
                    assert query == "exportType=JSON"
                    self._answer(200, found)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.gate.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def labelstudio() -> Iterator[FakeLabelStudio]:
    fake = FakeLabelStudio()
    yield fake
    fake.close()


@pytest.fixture
def models(tiny_artifact: Path) -> Iterator[Path]:
    """A models folder with the tiny model; any job process still running at the end is
    stopped (its session: it and its trainer)."""
    yield tiny_artifact.parent
    jobs = tiny_artifact.parent / ".labelstudio-jobs"
    for pid_file in jobs.glob(f"*/{job_files.PID_FILE}"):
        pid, _, start = pid_file.read_text().strip().partition(" ")
        if job_files.running(int(pid), start or None):
            os.killpg(int(pid), signal.SIGKILL)


def client_for(folder: Path, **settings: Any) -> TestClient:
    return TestClient(
        create_app(
            Settings(
                models_dir=folder,
                default_model="tiny",
                model_process=False,
                labelstudio_train_args=TINY_TRAIN,
                **settings,
            )
        )
    )


def start_training(client: TestClient, project: Any = 5, **headers: str) -> httpx.Response:
    """What Label Studio's "Start Training" sends (a project serialized in full)."""
    body = {"action": "START_TRAINING", "project": {"id": project, "title": "NER"}}
    return client.post("/labelstudio/webhook", json=body, headers=headers)


def finished(client: TestClient, job: str, timeout: float = 120.0) -> dict[str, Any]:
    """The job's state once it has succeeded or failed (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        state: dict[str, Any] = client.get(f"/labelstudio/jobs/{job}").json()
        if state["status"] in ("succeeded", "failed"):
            return state
        assert time.monotonic() < deadline, f"job {job} still {state['status']}: {state}"
        time.sleep(0.2)


def card(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((path / "metadata.json").read_text())
    return loaded


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("labelstudio_url", "localhost:8080", "expected http://HOST[:PORT][/PATH]"),
        ("labelstudio_model_name", "../up-{project}", "does not make a model name"),
        ("labelstudio_model_name", "ls-{id}", "does not make a model name"),
        ("labelstudio_train_args", "--output /tmp/x", "--output is set by the training job"),
        ("labelstudio_train_args", "--name=mine", "--name=mine is set by the training job"),
        ("labelstudio_train_args", "--set 'a=b", "cannot split"),
        ("labelstudio_train_every", "-1", "greater than or equal to 0"),
    ],
)
def test_bad_training_settings_name_the_setting(
    tiny_artifact: Path, setting: str, value: str, message: str
) -> None:
    with pytest.raises(ValidationError) as raised:
        Settings(models_dir=tiny_artifact.parent, **{setting: value})
    assert raised.value.errors()[0]["loc"] == (setting,)
    assert message in str(raised.value)


def test_start_training_names_what_it_lacks_and_starts_nothing(
    models: Path, labelstudio: FakeLabelStudio, shipped_models_dir: Path
) -> None:
    cases = [
        ({}, "needs TAGSERVE_LABELSTUDIO_URL and TAGSERVE_LABELSTUDIO_TOKEN"),
        ({"labelstudio_url": labelstudio.url}, "needs TAGSERVE_LABELSTUDIO_TOKEN"),
        (
            {"labelstudio_url": labelstudio.url, "labelstudio_token": TOKEN, "models": ["tiny"]},
            "TAGSERVE_MODELS lists the models to serve and ls-project-5 is not among them",
        ),
    ]
    for settings, message in cases:
        with client_for(models, **settings) as client:
            answer = start_training(client)
            assert answer.status_code == 409 and message in answer.json()["detail"], answer.text
            assert client.get("/labelstudio/jobs").json() == {"jobs": []}
    # The shipped models' folder is the package's: nothing is trained into it.
    shipped = Settings(
        models_dir=shipped_models_dir, labelstudio_url=labelstudio.url, labelstudio_token=TOKEN
    )
    with TestClient(create_app(shipped)) as client:
        answer = start_training(client)
        assert answer.status_code == 409
        assert "TAGSERVE_MODELS_DIR is the shipped models' folder" in answer.json()["detail"]
    with client_for(models, labelstudio_url=labelstudio.url, labelstudio_token=TOKEN) as client:
        for project, where in (
            ({"title": "no id"}, "project.id"),
            (None, "project"),
            ({"id": "x.1"}, "project.id"),
            ({"id": True}, "project.id"),
        ):
            body = {"action": "START_TRAINING", "project": project}
            answer = client.post("/labelstudio/webhook", json=body)
            assert answer.status_code == 422, answer.text
            assert answer.json()["detail"].startswith(f"{where}: must be the Label Studio project")
        missing = client.get("/labelstudio/jobs/20240101T000000Z-abcdef")
        assert missing.status_code == 404 and "no training job" in missing.json()["detail"]
        assert client.get("/labelstudio/jobs/..%2F..%2Fetc").status_code == 404
        assert client.post("/labelstudio/job_status", json={"job": "../x"}).status_code == 404
    assert labelstudio.seen == []
    assert sorted(p.name for p in models.iterdir()) == ["tiny"]


def test_training_routes_need_the_key_as_bearer_or_basic_password(models: Path) -> None:
    basic = base64.b64encode(b"labelstudio:k1").decode()
    with client_for(models, api_keys=["k1"]) as client:
        assert client.get("/labelstudio/jobs").status_code == 401
        assert start_training(client).status_code == 401
        assert client.post("/labelstudio/train", json={}).status_code == 401
        for header in ("Bearer k1", f"Basic {basic}"):
            assert client.get("/labelstudio/jobs", headers={"Authorization": header}).json() == {
                "jobs": []
            }


def test_a_running_job_refuses_a_second_and_annotation_events_wait_for_it(
    models: Path, labelstudio: FakeLabelStudio
) -> None:
    """The lock held (as a running job's process holds it): every way to start is refused,
    and the annotation count is kept for the event after the job."""
    jobs = models / ".labelstudio-jobs"
    jobs.mkdir()
    with (jobs / job_files.LOCK_FILE).open("w") as lock:
        import fcntl

        fcntl.flock(lock, fcntl.LOCK_EX)
        settings = {"labelstudio_url": labelstudio.url, "labelstudio_token": TOKEN}
        with client_for(models, labelstudio_train_every=2, **settings) as client:
            assert start_training(client).status_code == 409
            train = client.post("/labelstudio/train", json={"annotations": [], "project": "5.1"})
            assert train.status_code == 409 and "a training job is running" in train.text
            event = {"action": "ANNOTATION_CREATED", "project": {"id": 5}, "annotation": {}}
            answers = [client.post("/labelstudio/webhook", json=event).json() for _ in range(3)]
            assert [a["status"] for a in answers] == ["acknowledged"] * 3
            assert answers[0]["training"] == "not started: 1 of 2 annotation events"
            assert answers[1]["training"].startswith("not started: a training job is running")
            assert answers[2]["training"].startswith("not started: a training job is running")
            other = {**event, "project": {"id": 6}}
            assert client.post("/labelstudio/webhook", json=other).json()["training"] == (
                "not started: 1 of 2 annotation events"
            )
    assert labelstudio.seen == []


def test_the_projects_own_model_answers_it_once_served(tiny_artifact: Path) -> None:
    shutil.copytree(tiny_artifact, tiny_artifact.parent / "ls-project-7")
    with client_for(tiny_artifact.parent) as client:
        for project, version in (("7.1712", "ls-project-7-0.0.1"), ("8.1712", "tiny-0.0.1")):
            setup = client.post("/labelstudio/setup", json={"project": project, "schema": CONFIG})
            assert setup.json() == {"model_version": version}
            tasks = [{"id": 1, "data": {"text": "harry potter"}}]
            body = {"tasks": tasks, "label_config": CONFIG, "project": project}
            predicted = client.post("/labelstudio/predict", json=body).json()
            assert predicted["results"][0]["model_version"] == version
        # A model named in the config still wins.
        named = CONFIG.replace('<Labels name="label"', '<Labels model="tiny" name="label"')
        setup = client.post("/labelstudio/setup", json={"project": "7.1", "schema": named})
        assert setup.json() == {"model_version": "tiny-0.0.1"}


@pytest.mark.slow
def test_start_training_fetches_trains_and_installs_the_next_version(
    models: Path, labelstudio: FakeLabelStudio
) -> None:
    labelstudio.exports[5] = export(12)
    labelstudio.gate.clear()  # the export waits: the job is running meanwhile
    settings = {"labelstudio_url": labelstudio.url, "labelstudio_token": TOKEN}
    with client_for(models, labelstudio_train_every=2, **settings) as client:
        started = start_training(client)
        assert started.status_code == 201, started.text
        first = started.json()["job"]
        assert started.json()["state"]["status"] in ("queued", "running")
        assert started.json()["state"]["model"] == "ls-project-5"
        # A second start meanwhile: 409 naming the running job, whichever way it comes.
        deadline = time.monotonic() + 30
        while not labelstudio.seen:
            assert time.monotonic() < deadline, "the job never asked for the export"
            time.sleep(0.05)
        again = start_training(client, 6)
        assert again.status_code == 409 and again.json()["job"] == first
        assert (
            f"training job {first} is running (model ls-project-5 from project 5"
            in (again.json()["detail"])
        )
        labelstudio.gate.set()
        state = finished(client, first)
        assert state["status"] == "succeeded", state
        assert labelstudio.seen == [
            ("GET", "/api/projects/5/export?exportType=JSON", f"Token {TOKEN}")
        ]
        assert (state["tasks"], state["annotated"], state["version"]) == (12, 12, "1")
        assert state["reload"].startswith("not requested: this server is not tagserve serve")
        assert any('"dev_f1"' in line for line in state["log"])
        installed = models / "ls-project-5"
        assert (card(installed)["name"], card(installed)["version"]) == ("ls-project-5", "1")
        assert json.loads((installed / "labels.json").read_text())["labels"]  # a whole artifact
        # Label Studio's /train brings the tasks itself; the next version replaces the first.
        sent = client.post("/labelstudio/train", json={"annotations": export(8), "project": "5.17"})
        assert sent.status_code == 201, sent.text
        second = finished(client, sent.json()["job"])
        assert (second["status"], second["version"], second["tasks"]) == ("succeeded", "2", 8)
        assert card(installed)["version"] == "2" and len(labelstudio.seen) == 1
        # Every second annotation event of a project starts one too.
        event = {"action": "ANNOTATION_UPDATED", "project": {"id": 5}}
        assert client.post("/labelstudio/webhook", json=event).status_code == 200
        third = client.post("/labelstudio/webhook", json=event)
        assert third.status_code == 201 and third.json()["state"]["trigger"] == (
            "2 annotation events"
        )
        assert finished(client, third.json()["job"])["version"] == "3"
        listed = client.get("/labelstudio/jobs").json()["jobs"]
        assert [j["id"] for j in listed] == [third.json()["job"], sent.json()["job"], first]
        assert client.post("/labelstudio/job_status", json={"job": first}).json()["id"] == first
    # Nothing half-written is left: no hidden copy, no old version.
    assert sorted(p.name for p in models.iterdir()) == [".labelstudio-jobs", "ls-project-5", "tiny"]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("export_of_5", "settings", "error"),
    [
        (500, {}, "export of project 5 from http://127.0.0.1:"),
        (
            export(12),
            {"labelstudio_token": "wrong-token"},
            'not provided."} (TAGSERVE_LABELSTUDIO_TOKEN must be the API token of a user',
        ),
        (export(12), {"labelstudio_token": JWT[:-2] + "xx"}, "refused the personal access token"),
        ([{"id": 1, "data": {"text": "x"}, "annotations": []}], {}, "no annotated tasks"),
        (export(3), {}, "--dev-split 0.1 of 3 training sentences"),
        (export(12), {"labelstudio_train_timeout_s": 0.5}, "training ran past 0.5 s"),
    ],
)
def test_a_failed_job_says_why_in_one_line_and_the_service_goes_on(
    models: Path, labelstudio: FakeLabelStudio, export_of_5: Any, settings: Any, error: str
) -> None:
    labelstudio.exports[5] = export_of_5
    given = {"labelstudio_url": labelstudio.url, "labelstudio_token": TOKEN, **settings}
    with client_for(models, **given) as client:
        started = start_training(client)
        assert started.status_code == 201, started.text
        state = finished(client, started.json()["job"])
        assert state["status"] == "failed" and error in state["error"], state
        assert "\n" not in state["error"] and state["finished_at"]
        if error.startswith("export"):
            assert "HTTP 500" in state["error"]
        tagged = client.post("/tag", json={"text": "harry potter"})
        assert tagged.status_code == 200 and tagged.json()["model"]["name"] == "tiny"
        # The lock went with the job: the next one starts.
        assert start_training(client).status_code == 201
        finished(client, client.get("/labelstudio/jobs").json()["jobs"][0]["id"])
    assert sorted(p.name for p in models.iterdir()) == [".labelstudio-jobs", "tiny"]


@pytest.mark.slow
def test_a_job_whose_process_was_killed_reads_as_failed(
    models: Path, labelstudio: FakeLabelStudio
) -> None:
    labelstudio.exports[5] = export(12)
    labelstudio.gate.clear()
    settings = {"labelstudio_url": labelstudio.url, "labelstudio_token": TOKEN}
    with client_for(models, **settings) as client:
        job = start_training(client).json()["job"]
        pid = int((models / ".labelstudio-jobs" / job / job_files.PID_FILE).read_text().split()[0])
        deadline = time.monotonic() + 30
        while not labelstudio.seen:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        os.killpg(pid, signal.SIGKILL)
        state = finished(client, job, timeout=30)
        assert state["status"] == "failed"
        assert "exited with status -9" in state["error"] or "killed?" in state["error"]
        labelstudio.gate.set()
        assert start_training(client).status_code == 201  # the kernel released the lock


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_model_trained_from_label_studio_goes_live_in_tagserve_serve(
    tmp_path: Path, shipped_models_dir: Path, labelstudio: FakeLabelStudio, workers: str
) -> None:
    models = tmp_path / "models"
    models.mkdir()
    shutil.copytree(shipped_models_dir / "ner", models / "ner")
    labelstudio.exports[5] = export(12)
    server = start_server(
        models,
        timeout=180,
        workers=workers,
        api_keys="k1",
        labelstudio_url=labelstudio.url,
        labelstudio_token=JWT,
        labelstudio_train_args=TINY_TRAIN,
    )
    auth = {"Authorization": "Bearer k1"}
    try:
        with httpx.Client(base_url=server.url, headers=auth, timeout=30) as client:
            body = {"action": "START_TRAINING", "project": {"id": 5}}
            started = client.post("/labelstudio/webhook", json=body)
            assert started.status_code == 201, started.text
            job = started.json()["job"]
            deadline = time.monotonic() + 180
            while (state := client.get(f"/labelstudio/jobs/{job}").json())["status"] not in (
                "succeeded",
                "failed",
            ):
                assert time.monotonic() < deadline, state
                time.sleep(0.3)
            assert state["status"] == "succeeded", state
            assert (
                state["reload"] == f"requested: SIGHUP to tagserve serve (pid {server.process.pid})"
            )
            # The personal access token was exchanged, and the access token used.
            assert [(m, p.split("?")[0], a) for m, p, a in labelstudio.seen] == [
                ("POST", "/api/token/refresh/", ""),
                ("GET", "/api/projects/5/export", f"Bearer {ACCESS}"),
            ]
            deadline = time.monotonic() + 60
            while True:
                served = {m["name"]: m["version"] for m in client.get("/models").json()["models"]}
                if "ls-project-5" in served:
                    break
                assert time.monotonic() < deadline, served
                time.sleep(0.2)
            assert served["ls-project-5"] == "1" and "ner" in served
            tagged = client.post("/tag", json={"text": "Angela Merkel visited Paris .",
                                               "model": "ls-project-5"})  # fmt: skip
            assert tagged.status_code == 200, tagged.text
            assert tagged.json()["model"] == {"name": "ls-project-5", "version": "1"}
            assert [t["text"] for t in tagged.json()["results"][0]["tokens"]][:2] == [
                "Angela",
                "Merkel",
            ]
            # The project's predictions now come from its own model.
            tasks = [{"id": 1, "data": {"text": "Barack Obama flew to Berlin ."}}]
            body = {"tasks": tasks, "label_config": CONFIG, "project": "5.1712"}
            predicted = client.post("/labelstudio/predict", json=body).json()
            assert predicted["model_version"] == "ls-project-5-1"
    finally:
        assert server.stop() == 0
    pid, _, start = (
        (models / ".labelstudio-jobs" / job / job_files.PID_FILE).read_text().partition(" ")
    )
    assert not job_files.running(int(pid), start.strip())
