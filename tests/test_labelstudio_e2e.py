"""tagserve as the ML backend of a real Label Studio, both on loopback.

Label Studio (a pinned release from the package registry) lives in a virtualenv of its own,
``$TAGSERVE_LABELSTUDIO_VENV`` or /tmp/tagserve-labelstudio-venv, made here on the first run
(about 1.5 minutes) and reused after; its pins never touch tagserve's lock. It keeps its
SQLite database in a temporary folder and gets its user and API token from the environment
on its first start (about 50 s here). tagserve runs with an API key, which Label Studio
sends as the HTTP Basic password. Each project is created, connected, filled with tasks
and predicted through Label Studio's REST API, then read back through its task API, its
data manager (sorted by prediction score) and a JSON export. Last, a project annotated
through the API is trained from Label Studio's own "Start Training" (its START_TRAINING
webhook), and the model tagserve trains from its export predicts its tasks.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tagserve.training.readers import read_dataset
from tests.annotation_exports import from_tokens
from tests.live_server import LiveServer, start_server

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

LABEL_STUDIO = "label-studio==1.23.2"
VENV = Path(os.environ.get("TAGSERVE_LABELSTUDIO_VENV", "/tmp/tagserve-labelstudio-venv"))
TOKEN = "e2e0123456789abcdef0123456789abcdef0123"
KEY = "labelstudio-e2e-key"
NER_CONFIG = """<View>
  <Labels name="label" toName="text">
    <Label value="Person" predicted_values="PER"/><Label value="LOC"/>
    <Label value="ORG"/><Label value="MISC"/>
  </Labels>
  <Text name="text" value="$text"/>
</View>"""
SLOT_LABELS = [
    "fromloc.city_name",
    "toloc.city_name",
    "depart_date.day_name",
    "depart_date.month_name",
    "depart_date.day_number",
    "depart_time.period_of_day",
    "airline_name",
    "class_type",
]
INTENTS = ["flight", "atis_airfare", "atis_ground_service", "atis_airline", "atis_abbreviation"]
SLOTS_CONFIG = (
    '<View><Text name="query" value="$query"/><Labels name="slot" toName="query">'
    + "".join(f'<Label value="{label}"/>' for label in SLOT_LABELS)
    + '</Labels><Choices name="intent" toName="query">'
    + "".join(f'<Choice value="{intent}"/>' for intent in INTENTS)
    + "</Choices></View>"
)
EMOJI_TASK = "🙂👍🏽 Angela Merkel met Emmanuel Macron in Paris ."
# Training from Label Studio in seconds: a real tagserve train, a tiny network.
TINY_TRAIN = (
    "--vectors none --threads 1 --set training.epochs=2 --set model.hidden_size=16 "
    "--set model.char_channels=8"
)


def _fail_or_skip(message: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def labelstudio_venv() -> Path:
    """The virtualenv with Label Studio, made once (under a lock) and reused."""
    marker = VENV / ".tagserve-ready"
    with open(f"{VENV}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.is_file() and marker.read_text().strip() == LABEL_STUDIO:
            return VENV
        shutil.rmtree(VENV, ignore_errors=True)
        base_python = getattr(sys, "_base_executable", sys.executable)
        steps = [
            [base_python, "-m", "venv", str(VENV)],
            [str(VENV / "bin/pip"), "install", "-q", "--disable-pip-version-check", LABEL_STUDIO],
        ]
        for step in steps:
            done = subprocess.run(step, capture_output=True, text=True, timeout=900)
            if done.returncode != 0:
                _fail_or_skip(f"could not install {LABEL_STUDIO}: {done.stderr[-2000:]}")
        marker.write_text(LABEL_STUDIO)
    return VENV


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def labelstudio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """A running Label Studio and a client with its API token."""
    venv = labelstudio_venv()
    data = tmp_path_factory.mktemp("labelstudio")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "PYTHONPATH"}}
    env.update(
        LABEL_STUDIO_BASE_DATA_DIR=str(data),
        COLLECT_ANALYTICS="false",
        LABEL_STUDIO_USERNAME="e2e@example.com",
        LABEL_STUDIO_PASSWORD="e2e-password-123",
        LABEL_STUDIO_USER_TOKEN=TOKEN,
        LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN="true",
        # tagserve is on loopback: Label Studio refuses such backend (and webhook) URLs unless
        # told otherwise, as a user serving both on one host or private network must do.
        ML_BLOCK_LOCAL_IP="false",
        SSRF_PROTECTION_ENABLED="false",
    )
    log_path = data / "labelstudio.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [str(venv / "bin/label-studio"), "start", "--no-browser", "--internal-host",
             "127.0.0.1", "--port", str(port), "--host", url],
            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=data,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while True:
            if process.poll() is not None:
                pytest.fail(f"Label Studio exited: {log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"no answer on /health within 300 s: {log_path.read_text()[-3000:]}")
            time.sleep(1)
        headers = {"Authorization": f"Token {TOKEN}"}
        with httpx.Client(base_url=url, headers=headers, timeout=120) as client:
            yield client
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(scope="module")
def tagserve(
    labelstudio: httpx.Client, shipped_models_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """tagserve with copies of the shipped ner and slots models (a folder training may write
    to) and an API key, one HTTP worker (so the ``extra_params`` Label Studio sends to /setup
    reach the /predict that follows), training from this Label Studio with a tiny recipe."""
    models = tmp_path_factory.mktemp("models")
    for name in ("ner", "slots"):
        shutil.copytree(shipped_models_dir / name, models / name)
    server = start_server(
        models,
        timeout=120,
        api_keys=KEY,
        log_level="warning",
        labelstudio_url=str(labelstudio.base_url).rstrip("/"),
        labelstudio_token=TOKEN,
        labelstudio_train_args=TINY_TRAIN,
    )
    yield server
    server.stop()


def model_version(server: LiveServer, name: str) -> str:
    """``NAME-VERSION`` of a model, as tagserve's /models says."""
    models = httpx.get(f"{server.url}/models", headers={"Authorization": f"Bearer {KEY}"})
    [version] = [m["version"] for m in models.json()["models"] if m["name"] == name]
    return f"{name}-{version}"


def connect(
    labelstudio: httpx.Client, server: LiveServer, project: int, password: str, **extra: Any
) -> httpx.Response:
    return labelstudio.post(
        "/api/ml",
        json={
            "project": project,
            "url": f"{server.url}/labelstudio",
            "title": "tagserve",
            "auth_method": "BASIC_AUTH",
            "basic_auth_user": "labelstudio",
            "basic_auth_pass": password,
            **extra,
        },
    )


def predicted_project(
    labelstudio: httpx.Client,
    server: LiveServer,
    title: str,
    config: str,
    tasks: list[dict[str, str]],
    **extra: Any,
) -> tuple[int, str, list[dict[str, Any]]]:
    """Create, connect, import, retrieve predictions; the project, its model version and its
    tasks with their predictions as Label Studio's task API gives them."""
    created = labelstudio.post("/api/projects", json={"title": title, "label_config": config})
    assert created.status_code == 201, created.text
    project = created.json()["id"]
    refused = connect(labelstudio, server, project, "not-the-key")
    assert refused.status_code == 400 and "401" in refused.text, refused.text
    backend = connect(labelstudio, server, project, KEY, **extra)
    assert backend.status_code == 201, backend.text
    [listed] = labelstudio.get("/api/ml", params={"project": project}).json()
    assert listed["state"] == "CO", listed  # connected: health and setup passed
    version = listed["model_version"]
    imported = labelstudio.post(f"/api/projects/{project}/import", json=tasks)
    assert imported.status_code == 201 and imported.json()["task_count"] == len(tasks)
    action = labelstudio.post(
        "/api/dm/actions",
        params={"id": "retrieve_tasks_predictions", "project": project},
        json={"selectedItems": {"all": True, "excluded": []}},
    )
    assert action.status_code == 200, action.text
    # The data manager scores tasks by the project's chosen predictions (Settings, Annotation).
    chosen = labelstudio.patch(f"/api/projects/{project}", json={"model_version": version})
    assert chosen.status_code == 200 and chosen.json()["model_version"] == version, chosen.text
    listed_tasks = labelstudio.get(
        "/api/tasks", params={"project": project, "fields": "all", "page_size": 1000}
    ).json()["tasks"]
    assert len(listed_tasks) == len(tasks)
    return project, version, listed_tasks


def check_predictions(
    tasks: list[dict[str, Any]], field: str, version: str, names: set[str]
) -> list[dict[str, Any]]:
    """Every task has one prediction of ``version`` with a score, every span slices its
    task's text to its text and carries one of ``names``; the spans, for more checks."""
    found = []
    for task in tasks:
        [prediction] = task["predictions"]
        assert prediction["model_version"] == version
        assert 0 < prediction["score"] <= 1
        text = task["data"][field]
        for item in prediction["result"]:
            assert 0 < item["score"] <= 1
            if item["type"] == "labels":
                value = item["value"]
                assert text[value["start"] : value["end"]] == value["text"], (text, value)
                assert len(value["labels"]) == 1 and value["labels"][0] in names
                found.append(item)
    return found


def exported(labelstudio: httpx.Client, project: int) -> list[dict[str, Any]]:
    """A JSON export snapshot with the predictions in full."""
    made = labelstudio.post(
        f"/api/projects/{project}/exports/",
        json={"title": "e2e", "serialization_options": {"predictions": {"only_id": False}}},
    )
    assert made.status_code == 201, made.text
    export = made.json()["id"]
    deadline = time.monotonic() + 60
    while labelstudio.get(f"/api/projects/{project}/exports/{export}").json()["status"] != (
        "completed"
    ):
        assert time.monotonic() < deadline, "the export did not complete"
        time.sleep(0.5)
    download = labelstudio.get(
        f"/api/projects/{project}/exports/{export}/download", params={"exportType": "JSON"}
    )
    assert download.status_code == 200
    tasks: list[dict[str, Any]] = download.json()
    return tasks


def test_a_ner_project_gets_predictions_from_tagserve(
    labelstudio: httpx.Client, tagserve: LiveServer, data_dir: Path
) -> None:
    examples = read_dataset(data_dir / "conll2003/test.txt")[:40]
    texts = [" ".join(example.tokens) for example in examples] + [EMOJI_TASK]
    project, version, tasks = predicted_project(
        labelstudio, tagserve, "CoNLL-2003 NER", NER_CONFIG, [{"text": t} for t in texts]
    )
    assert version == model_version(tagserve, "ner")
    spans = check_predictions(tasks, "text", version, {"Person", "LOC", "ORG", "MISC"})
    assert len(spans) >= 40 and {s["value"]["labels"][0] for s in spans} >= {"Person", "LOC"}
    # Code points survive the round trip through Label Studio: after two emoji (three code
    # points, five UTF-16 units) "Paris" starts at 41.
    [emoji] = [t for t in tasks if t["data"]["text"] == EMOJI_TASK]
    paris = [s for s in emoji["predictions"][0]["result"] if s["value"]["text"] == "Paris"]
    assert [s["value"]["start"] for s in paris] == [EMOJI_TASK.index("Paris")] == [41]
    # The data manager sorted by prediction score: the least certain task first.
    view = labelstudio.post(
        "/api/dm/views",
        json={"project": project, "data": {"ordering": ["tasks:predictions_score"]}},
    ).json()
    ordered = labelstudio.get(
        "/api/tasks", params={"project": project, "view": view["id"], "fields": "all"}
    ).json()["tasks"]
    scores = [t["predictions_score"] for t in ordered]
    assert scores == sorted(scores) and scores[0] < scores[-1]
    assert scores[0] == min(t["predictions"][0]["score"] for t in tasks)
    # The export holds the same predictions.
    export = exported(labelstudio, project)
    assert sorted(t["id"] for t in export) == sorted(t["id"] for t in tasks)
    by_id = {t["id"]: t for t in tasks}
    for task in export:
        [prediction] = task["predictions"]
        assert prediction["result"] == by_id[task["id"]]["predictions"][0]["result"]
        assert prediction["score"] == by_id[task["id"]]["predictions"][0]["score"]


def test_a_slots_and_intent_project_gets_slots_and_the_intent(
    labelstudio: httpx.Client, tagserve: LiveServer, data_dir: Path
) -> None:
    examples = read_dataset(data_dir / "atis/test")[:30]
    tasks_in = [{"query": " ".join(example.tokens)} for example in examples]
    # "flight" in the config stands for the model's atis_flight, mapped in extra_params.
    project, version, tasks = predicted_project(
        labelstudio,
        tagserve,
        "ATIS slots",
        SLOTS_CONFIG,
        tasks_in,
        extra_params={"labels": {"atis_flight": "flight"}},
    )
    assert version == model_version(tagserve, "slots")  # by the config's labels
    spans = check_predictions(tasks, "query", version, set(SLOT_LABELS))
    assert {s["value"]["labels"][0] for s in spans} >= {"fromloc.city_name", "toloc.city_name"}
    choices = [
        item["value"]["choices"]
        for task in tasks
        for item in task["predictions"][0]["result"]
        if item["type"] == "choices"
    ]
    assert all(len(c) == 1 and c[0] in INTENTS for c in choices)
    gold_flights = sum(example.intent == "atis_flight" for example in examples)
    assert sum(c == ["flight"] for c in choices) >= gold_flights - 3
    export = exported(labelstudio, project)
    assert [len(t["predictions"]) for t in export] == [1] * len(tasks_in)


def test_start_training_in_label_studio_trains_and_serves_the_projects_model(
    labelstudio: httpx.Client, tagserve: LiveServer, data_dir: Path
) -> None:
    """Annotate tasks through Label Studio's API, press its "Start Training" (the API
    behind it), and the project's predictions come from the model tagserve trained."""
    golds = {}
    for example in read_dataset(data_dir / "conll2003/train.txt")[:300]:
        if any(tag != "O" for tag in example.tags):
            gold = from_tokens(example.tokens, example.tags)
            golds.setdefault(gold.text, gold)
    golds = dict(list(golds.items())[:24])
    created = labelstudio.post(
        "/api/projects", json={"title": "Trained by tagserve", "label_config": NER_CONFIG}
    )
    project = created.json()["id"]
    backend = connect(labelstudio, tagserve, project, KEY)
    assert backend.status_code == 201, backend.text
    imported = labelstudio.post(
        f"/api/projects/{project}/import", json=[{"text": t} for t in golds]
    )
    assert imported.status_code == 201
    tasks = labelstudio.get("/api/tasks", params={"project": project, "page_size": 100}).json()
    names = {"PER": "Person"}
    for task in tasks["tasks"]:
        gold = golds[task["data"]["text"]]
        result = [
            {"from_name": "label", "to_name": "text", "type": "labels",
             "value": {"start": s, "end": e, "text": gold.text[s:e],
                       "labels": [names.get(label, label)]}}
            for s, e, label in gold.spans
        ]  # fmt: skip
        made = labelstudio.post(f"/api/tasks/{task['id']}/annotations/", json={"result": result})
        assert made.status_code == 201, made.text
    # "Start Training": Label Studio sends START_TRAINING to tagserve's /webhook (with the
    # connection's Basic credentials); tagserve fetches the export with the API token.
    trained = labelstudio.post(f"/api/ml/{backend.json()['id']}/train")
    assert trained.status_code == 200, trained.text
    auth = {"Authorization": f"Bearer {KEY}"}
    name = f"ls-project-{project}"
    deadline = time.monotonic() + 300
    while True:
        jobs = httpx.get(f"{tagserve.url}/labelstudio/jobs", headers=auth).json()["jobs"]
        mine = [j for j in jobs if j["project"] == project]
        if mine and mine[0]["status"] in ("succeeded", "failed"):
            break
        assert time.monotonic() < deadline, mine
        time.sleep(1)
    [job] = mine
    assert job["status"] == "succeeded", job
    assert (job["model"], job["version"], job["annotated"]) == (name, "1", len(golds))
    assert job["trigger"] == "START_TRAINING" and job["reload"].startswith("requested")
    deadline = time.monotonic() + 60
    while f"{name}-1" not in {
        f"{m['name']}-{m['version']}"
        for m in httpx.get(f"{tagserve.url}/models", headers=auth).json()["models"]
    }:
        assert time.monotonic() < deadline, "the trained model was not served"
        time.sleep(0.5)
    action = labelstudio.post(
        "/api/dm/actions",
        params={"id": "retrieve_tasks_predictions", "project": project},
        json={"selectedItems": {"all": True, "excluded": []}},
    )
    assert action.status_code == 200, action.text
    [listed] = labelstudio.get("/api/ml", params={"project": project}).json()
    assert listed["model_version"] == f"{name}-1", listed
    predicted = labelstudio.get(
        "/api/tasks", params={"project": project, "fields": "all", "page_size": 100}
    ).json()["tasks"]
    assert len(predicted) == len(golds)
    for task in predicted:
        [prediction] = [p for p in task["predictions"] if p["model_version"] == f"{name}-1"]
        text = task["data"]["text"]
        for item in prediction["result"]:
            value = item["value"]
            assert text[value["start"] : value["end"]] == value["text"]
            assert value["labels"][0] in {"Person", "LOC", "ORG", "MISC"}
