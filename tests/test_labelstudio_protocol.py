"""The Label Studio ML-backend routes (/labelstudio/health, setup, predict, webhook) through
the real app: configs, label mapping, texts, hostile XML, limits and credentials."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tagserve.model.artifact_files import SHIPPED_MODELS_DIR
from tagserve.service.api.app import create_app
from tagserve.service.settings import Settings
from tests.service_helpers import tiny_app

NER = (
    '<View><Labels name="label" toName="text"><Label value="PER"/><Label value="LOC"/>'
    '<Label value="ORG"/><Label value="MISC"/></Labels><Text name="text" value="$text"/></View>'
)
# Several controls: an image's labels (skipped), a title text with no control, the labels
# under test, per-text and per-region choices, a free-text box and a rating.
SEVERAL = """<View>
  <Image name="img" value="$image"/>
  <RectangleLabels name="boxes" toName="img"><Label value="PER"/></RectangleLabels>
  <Header value="Title"/><Text name="title" value="$title"/>
  <Text name="body" value="$body"/>
  <Labels name="ents" toName="body"><Label value="Person" predicted_values="PER"/>
    <Label value="Place" alias="LOC"/><Label value="Animal"/></Labels>
  <Choices name="region_kind" toName="body" perRegion="true"><Choice value="x"/></Choices>
  <Choices name="topic" toName="body"><Choice value="news"/></Choices>
  <TextArea name="notes" toName="body"/><Rating name="quality" toName="body"/>
</View>"""
SLOTS = (
    '<View><Text name="query" value="$q"/><Labels name="slot" toName="query">'
    '<Label value="fromloc.city_name"/><Label value="to" predicted_values="toloc.city_name"/>'
    '</Labels><Choices name="intent" toName="query"><Choice value="atis_flight"/>'
    '<Choice value="fare" predicted_values="atis_airfare"/></Choices></View>'
)
SENTENCE = "Angela Merkel visited Paris with Barack Obama ."
# model_version is the artifact's name and version, as the cards of the shipped models say.
NER_VERSION, SLOTS_VERSION = (
    f"{name}-{json.loads((SHIPPED_MODELS_DIR / name / 'metadata.json').read_text())['version']}"
    for name in ("ner", "slots")
)


@pytest.fixture(scope="module")
def shipped() -> Iterator[TestClient]:
    """The shipped ner (default) and slots models, in this process."""
    with TestClient(create_app(Settings(model_process=False, models=["ner", "slots"]))) as client:
        yield client


def predict(client: TestClient, config: str, texts: list[Any], **extra: Any) -> Any:
    tasks = [{"id": i + 1, "data": {"text": t}} for i, t in enumerate(texts)]
    return client.post(
        "/labelstudio/predict", json={"tasks": tasks, "label_config": config, **extra}
    )


def spans(prediction: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (r["value"]["labels"][0], r["value"]["text"])
        for r in prediction["result"]
        if r["type"] == "labels"
    ]


def check_offsets(text: str, prediction: dict[str, Any]) -> None:
    for item in prediction["result"]:
        if item["type"] == "labels":
            value = item["value"]
            assert text[value["start"] : value["end"]] == value["text"]
            assert 0 < item["score"] <= 1


def test_health_setup_and_predictions_match_tag(shipped: TestClient) -> None:
    health = shipped.get("/labelstudio/health").json()
    assert health == {"status": "UP", "model_versions": [NER_VERSION, SLOTS_VERSION]}
    assert shipped.get("/labelstudio/").json() == health
    setup = shipped.post("/labelstudio/setup", json={"project": "1.1", "schema": NER})
    assert setup.json() == {"model_version": NER_VERSION}
    texts = [SENTENCE, "Nothing to see here .", "Google opened an office in Zurich ."]
    body = predict(shipped, NER, texts).json()
    assert len(body["results"]) == 3
    tagged = shipped.post("/tag", json={"texts": texts}).json()["results"]
    for text, prediction, result in zip(texts, body["results"], tagged, strict=True):
        assert prediction["model_version"] == NER_VERSION
        check_offsets(text, prediction)
        # The same pipeline as /tag: the same spans, labels and scores.
        assert [
            (r["value"]["start"], r["value"]["end"], r["value"]["labels"], r["score"])
            for r in prediction["result"]
        ] == [(e["start"], e["end"], [e["label"]], e["score"]) for e in result["entities"]]
        assert prediction["score"] == min(t["score"] for t in result["tokens"])
        assert {r["from_name"] for r in prediction["result"]} <= {"label"}
        assert {r["to_name"] for r in prediction["result"]} <= {"text"}
    assert spans(body["results"][0]) == [("PER", "Angela Merkel"), ("LOC", "Paris"),
                                         ("PER", "Barack Obama")]  # fmt: skip


def test_several_controls_fill_the_labels_bound_to_the_text(shipped: TestClient) -> None:
    tasks = [{"id": 7, "data": {"title": "Paris", "body": SENTENCE, "image": "x.png"}}]
    answer = shipped.post("/labelstudio/predict", json={"tasks": tasks, "label_config": SEVERAL})
    [prediction] = answer.json()["results"]
    check_offsets(SENTENCE, prediction)
    assert {(r["from_name"], r["to_name"]) for r in prediction["result"]} == {("ents", "body")}
    # PER via predicted_values, LOC through the alias; the model has no Animal, and ORG and
    # MISC are not in the config; the ner model has no intents to fill "topic".
    assert spans(prediction) == [("Person", "Angela Merkel"), ("LOC", "Paris"),
                                 ("Person", "Barack Obama")]  # fmt: skip


def test_a_slots_config_picks_the_slots_model_and_fills_the_intent(shipped: TestClient) -> None:
    text = "show me flights from boston to denver"
    setup = shipped.post("/labelstudio/setup", json={"project": "2.1", "schema": SLOTS})
    assert setup.json() == {"model_version": SLOTS_VERSION}
    others = ["show me the airfare from dallas to boston", "how much is a fare to dallas"]
    tasks = [{"id": i, "data": {"q": q}} for i, q in enumerate([text, *others])]
    body = shipped.post("/labelstudio/predict", json={"tasks": tasks, "label_config": SLOTS}).json()
    first, second, third = body["results"]
    check_offsets(text, first)
    assert spans(first) == [("fromloc.city_name", "boston"), ("to", "denver")]
    [choice] = [r for r in first["result"] if r["type"] == "choices"]
    assert choice["value"] == {"choices": ["atis_flight"]}
    assert (choice["from_name"], choice["to_name"]) == ("intent", "query")
    assert first["score"] <= choice["score"]
    assert [r["value"] for r in second["result"] if r["type"] == "choices"] == [
        {"choices": ["fare"]}
    ]
    # Its intent (atis_ground_fare, 0.58) is not a choice of the config: left out, but as
    # uncertain as it is, it still lowers the task's score.
    assert [r for r in third["result"] if r["type"] == "choices"] == []
    assert third["score"] < 0.6


def test_extra_params_pick_the_model_and_map_labels(shipped: TestClient) -> None:
    config = NER.replace('<Label value="PER"/>', '<Label value="Person"/>')
    extra = {"labels": {"PER": "Person"}}
    assert shipped.post(
        "/labelstudio/setup", json={"project": "3.1", "schema": config, "extra_params": extra}
    ).json() == {"model_version": NER_VERSION}
    mapped = predict(shipped, config, [SENTENCE], project="3.1").json()["results"][0]
    assert spans(mapped)[0] == ("Person", "Angela Merkel")
    # Another project was set up without the mapping: PER has no label there.
    unmapped = predict(shipped, config, [SENTENCE], project="3.2").json()["results"][0]
    assert spans(unmapped) == [("LOC", "Paris")]
    slots = shipped.post(
        "/labelstudio/setup",
        json={"project": "3.3", "schema": NER, "extra_params": {"model": "slots"}},
    )
    assert slots.status_code == 422  # slots knows none of PER, LOC, ORG, MISC
    assert "no model knows any of the config's labels (PER, LOC, ORG, MISC)" in slots.text
    by_attribute = NER.replace('<Labels name="label"', '<Labels model="nope" name="label"')
    unknown = predict(shipped, by_attribute, [SENTENCE])
    assert unknown.status_code == 404
    assert unknown.json()["detail"] == "model: unknown model 'nope'; loaded models: ner, slots"


@pytest.mark.parametrize(
    ("extra", "detail"),
    [
        ([1], "extra_params: must be a JSON object, not list"),
        ({"modle": "ner"}, "extra_params: unknown key 'modle'; known keys: model, labels"),
        ({"model": 3}, "extra_params.model: must be a model name (a string)"),
        ({"labels": ["PER"]}, "extra_params.labels: must map model labels to config labels"),
        ({"labels": {"PER": "Human"}}, "extra_params.labels.PER: 'Human' is not a label"),
    ],
)
def test_bad_extra_params_are_named(shipped: TestClient, extra: Any, detail: str) -> None:
    answer = shipped.post("/labelstudio/setup", json={"schema": NER, "extra_params": extra})
    assert answer.status_code == 422
    assert answer.json()["detail"].startswith(detail)


def test_unknown_labels_are_never_predicted_and_alone_are_refused(shipped: TestClient) -> None:
    config = NER.replace('<Label value="LOC"/>', '<Label value="Animal"/>')
    [prediction] = predict(shipped, config, [SENTENCE]).json()["results"]
    assert spans(prediction) == [("PER", "Angela Merkel"), ("PER", "Barack Obama")]
    alone = '<View><Labels name="l" toName="t"><Label value="Animal"/><Label value="Plant"/>'
    alone += '</Labels><Text name="t" value="$text"/></View>'
    for answer in (
        predict(shipped, alone, [SENTENCE]),
        shipped.post("/labelstudio/setup", json={"schema": alone}),
    ):
        assert answer.status_code == 422
        detail = answer.json()["detail"]
        assert "no model knows any of the config's labels (Animal, Plant)" in detail
        assert "ner: LOC, MISC, ORG, PER" in detail and "predicted_values" in detail


def test_empty_long_and_emoji_texts(shipped: TestClient) -> None:
    emoji = "🙂👍🏽 Angela Merkel 🇩🇪 visited Paris ."
    long_text = " ".join([SENTENCE] * 400)  # ~19,000 characters, many sentences
    texts = ["", "   \n ", emoji, long_text]
    empty, blank, smiling, long_one = predict(shipped, NER, texts).json()["results"]
    for prediction in (empty, blank):
        assert prediction == {"model_version": NER_VERSION, "score": 1.0, "result": []}
    check_offsets(emoji, smiling)
    assert spans(smiling) == [("PER", "Angela Merkel"), ("LOC", "Paris")]
    # Code points (Python's str indices), not UTF-16 units: 🙂 and 🏽 are one each here.
    paris = next(r for r in smiling["result"] if r["value"]["text"] == "Paris")["value"]
    assert paris["start"] == emoji.index("Paris") == 29
    assert len(emoji[:29].encode("utf-16-le")) // 2 == 34  # what UTF-16 offsets would say
    check_offsets(long_text, long_one)
    assert len(spans(long_one)) == 3 * 400
    assert long_one["result"][-1]["value"]["end"] == len(long_text) - 2


def test_texts_that_cannot_be_read_are_named(shipped: TestClient) -> None:
    cases = [
        ({"id": 1, "data": {"other": "x"}}, "tasks[0].data.text: missing"),
        ({"id": 1, "data": {"text": 5}}, "tasks[0].data.text: must be the text itself"),
        ({"id": 1, "data": {"text": None}}, "not null"),
        ({"id": 1}, "tasks[0].data.text: missing"),
    ]
    for task, detail in cases:
        answer = shipped.post("/labelstudio/predict", json={"tasks": [task], "label_config": NER})
        assert answer.status_code == 422 and detail in answer.json()["detail"], answer.text
    surrogate = (
        b'{"tasks": [{"data": {"text": "a\\ud800b"}}], "label_config": "'
        + NER.replace('"', '\\"').encode()
        + b'"}'
    )
    answer = shipped.post(
        "/labelstudio/predict", content=surrogate, headers={"content-type": "application/json"}
    )
    assert answer.status_code == 422
    assert "tasks[0].data.text: lone surrogate U+D800 at offset 1" in answer.json()["detail"]
    missing = shipped.post("/labelstudio/predict", json={"tasks": [{"data": {"text": "x"}}]})
    assert missing.status_code == 422 and "label_config" in missing.json()["detail"]


BILLION_LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + "".join(f'<!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10}">' for i in range(1, 10))
    + "]><View>&lol9;</View>"
).replace("&lol0;", "&lol;")
EXTERNAL = (
    '<!DOCTYPE v [<!ENTITY x SYSTEM "file:///etc/passwd">]><View><Text name="t" value="$text"/>'
    '<Labels name="l" toName="t"><Label value="&x;"/></Labels></View>'
)


@pytest.mark.parametrize(
    ("config", "detail"),
    [
        ("<View><Labels", "not well-formed XML: unclosed token: line 1, column 6"),
        ("", "not well-formed XML: no element found"),
        ("<Labels/>", "the root element is <Labels>, expected <View>"),
        (BILLION_LAUGHS, "DTDs and entity declarations are not accepted"),
        (EXTERNAL, "a declaration ('<!DOCTYPE ') at offset 0"),
        ("<View>&x;</View>", "not well-formed XML: undefined entity"),
        ('<View><Text name="t" value="$text"/></View>', "no <Labels> or <Choices> control"),
        (
            '<View><Text name="t" value="fixed"/><Labels name="l" toName="t">'
            '<Label value="PER"/></Labels></View>',
            "no <Labels> or <Choices> control bound (toName) to a <Text>",
        ),
        (
            '<View><Text name="t" value="$text"/><Labels name="l" toName="t"><Label/></Labels>'
            "</View>",
            "a <Label> without a value in the control 'l'",
        ),
        ("<View>" + " " * 200_001 + "</View>", "characters exceed the limit of 200000"),
    ],
)
def test_bad_configs_are_refused_naming_the_problem(
    shipped: TestClient, config: str, detail: str
) -> None:
    for path, field in (("/labelstudio/setup", "schema"), ("/labelstudio/predict", "label_config")):
        body = {"schema": config} if field == "schema" else {"tasks": [], "label_config": config}
        answer = shipped.post(path, json=body)
        assert answer.status_code == 422, answer.text
        assert answer.json()["detail"].startswith(f"{field}: "), answer.text
        assert detail in answer.json()["detail"]
        assert "root:" not in answer.text  # nothing of /etc/passwd


@pytest.fixture
def small(tiny_artifact: Path) -> Iterator[TestClient]:
    """The tiny model under small limits, with API keys."""
    app = tiny_app(
        tiny_artifact.parent,
        max_texts=3,
        max_text_chars=50,
        max_tokens=12,
        max_body_bytes=4096,
        api_keys=["k1"],
    )
    with TestClient(app, headers={"Authorization": "Bearer k1"}) as client:
        yield client


def test_task_lists_are_bounded_naming_the_limit(small: TestClient) -> None:
    assert predict(small, NER, ["harry potter"] * 3).status_code == 200
    over = predict(small, NER, ["harry"] * 4)
    assert over.status_code == 422
    assert over.json()["detail"].startswith(
        "tasks: 4 tasks exceed the limit of 3 per request (TAGSERVE_MAX_TEXTS)"
    )
    long_text = predict(small, NER, ["ok", "x" * 51])
    assert long_text.status_code == 422
    assert long_text.json()["detail"] == (
        "tasks[1].data.text: 51 characters exceed the limit of 50 (TAGSERVE_MAX_TEXT_CHARS)"
    )
    tokens = predict(small, NER, ["a b c d e f g", "h i j k l m"])
    assert tokens.status_code == 422
    assert tokens.json()["detail"].startswith(
        "tasks: 13 tokens exceed the limit of 12 per request (TAGSERVE_MAX_TOKENS)"
    )
    big = predict(small, NER, ["y" * 5000])
    assert big.status_code == 413
    assert "limit of 4096 bytes (TAGSERVE_MAX_BODY_BYTES)" in big.json()["detail"]
    not_a_list = small.post("/labelstudio/predict", json={"tasks": {}, "label_config": NER})
    assert not_a_list.status_code == 422 and "tasks" in not_a_list.json()["detail"]


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(
    ("authorization", "status"),
    [
        (None, 401),
        ("Bearer k1", 200),
        ("Bearer k2", 401),
        (basic("label-studio", "k1"), 200),
        (basic("", "k1"), 200),  # any user name
        (basic("k1", "wrong"), 401),
        (basic("k1", ""), 401),
        ("Basic " + base64.b64encode(b"k1").decode(), 401),  # no colon: no password
        ("Basic not-base64!", 401),
        ("Token k1", 401),
    ],
)
def test_backend_routes_take_the_key_as_bearer_or_basic_password(
    tiny_artifact: Path, authorization: str | None, status: int
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    with TestClient(tiny_app(tiny_artifact.parent, api_keys=["k1"])) as client:
        calls = [
            client.post("/labelstudio/setup", json={"schema": NER}, headers=headers),
            client.post(
                "/labelstudio/predict",
                json={"tasks": [{"data": {"text": "harry"}}], "label_config": NER},
                headers=headers,
            ),
            client.post("/labelstudio/webhook", json={"action": "PING"}, headers=headers),
        ]
        assert [c.status_code for c in calls] == [status] * 3, [c.text for c in calls]
        if status == 401:
            details = [c.json()["detail"] for c in calls]
            assert all("API key" in d or "Authorization header" in d for d in details)
            assert "k1" not in "".join(c.text for c in calls)
        assert client.get("/labelstudio/health", headers=headers).status_code == 200
        # Elsewhere the header alone: Basic stays refused on /tag.
        if authorization and authorization.startswith("Basic") and status == 200:
            tag = client.post("/tag", json={"text": "harry"}, headers=headers)
            assert tag.status_code == 401


def test_without_keys_the_backend_is_open_and_health_waits_for_models(tiny_artifact: Path) -> None:
    app = tiny_app(tiny_artifact.parent)
    client = TestClient(app)
    down = client.get("/labelstudio/health")
    assert down.status_code == 503 and down.json() == {"status": "DOWN", "detail": "starting"}
    with client:
        assert client.post("/labelstudio/setup", json={"schema": NER}).json() == {
            "model_version": "tiny-0.0.1"
        }


def test_webhook_events_are_acknowledged(shipped: TestClient) -> None:
    # START_TRAINING: tests/test_labelstudio_training.py
    for action in ("ANNOTATION_CREATED", "PING"):
        answer = shipped.post("/labelstudio/webhook", json={"action": action, "project": {}})
        assert answer.status_code == 200
        assert answer.json()["status"] == "acknowledged" and answer.json()["action"] == action
        assert answer.json()["training"].startswith("not started")
    assert shipped.post("/labelstudio/webhook", json=[1]).status_code == 422
