"""POST /tag and the other routes, through the real app with its lifespan."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi.testclient import TestClient

from tagserve.service.settings import Settings
from tests.prometheus import has_sample, sample_value
from tests.service_helpers import tiny_app

DOCUMENT = (
    "Harry Potter met Hermione Granger in London. They flew to the U.S. on Monday!\n\n"
    "Mr. O'Brien wasn't there. Café naïve 東京 🙂 résumé."
)


def check_offsets(text: str, result: dict) -> None:
    previous_end = 0
    for token in result["tokens"]:
        assert text[token["start"] : token["end"]] == token["text"]
        assert token["start"] >= previous_end
        previous_end = token["end"]
    for entity in result["entities"]:
        assert text[entity["start"] : entity["end"]] == entity["text"]
        inside = [t for t in result["tokens"] if entity["start"] <= t["start"] < entity["end"]]
        assert inside[0]["start"] == entity["start"] and inside[-1]["end"] == entity["end"]
        assert entity["score"] == min(t["score"] for t in inside)


def test_tag_text_shape_and_offsets(tiny_artifact: Path) -> None:
    with TestClient(tiny_app(tiny_artifact.parent)) as client:
        response = client.post("/tag", json={"text": DOCUMENT})
    assert response.status_code == 200
    body = response.json()
    assert body["model"] == {"name": "tiny", "version": "0.0.1"}
    [result] = body["results"]
    assert result["text"] == DOCUMENT
    assert [t["text"] for t in result["tokens"]][:3] == ["Harry", "Potter", "met"]
    assert "U.S." in [t["text"] for t in result["tokens"]]
    check_offsets(DOCUMENT, result)
    for token in result["tokens"]:
        assert re.fullmatch(r"O|[BI]-(PER|LOC|ORG|MISC)", token["tag"])
        assert 0.0 <= token["score"] <= 1.0


def test_texts_come_back_in_order(tiny_artifact: Path) -> None:
    texts = ["first text here", "", "second one", "   ", "Harry Potter"]
    with TestClient(tiny_app(tiny_artifact.parent)) as client:
        body = client.post("/tag", json={"texts": texts}).json()
    assert [r["text"] for r in body["results"]] == texts
    assert [len(r["tokens"]) for r in body["results"]] == [3, 0, 2, 0, 2]
    for text, result in zip(texts, body["results"], strict=True):
        check_offsets(text, result)


def test_pretokenized_offsets_refer_to_joined_tokens(tiny_artifact: Path) -> None:
    tokens = [["Harry", "Potter", "visited", "London"], ["Hello"]]
    with TestClient(tiny_app(tiny_artifact.parent)) as client:
        body = client.post("/tag", json={"tokens": tokens}).json()
    first = body["results"][0]
    assert first["text"] == "Harry Potter visited London"
    assert [(t["start"], t["end"]) for t in first["tokens"]] == [
        (0, 5),
        (6, 12),
        (13, 20),
        (21, 27),
    ]
    assert body["results"][1]["tokens"][0]["text"] == "Hello"


def test_http_answers_equal_offline_answers(tiny_artifact: Path) -> None:
    """The same text tagged alone through the predictor gets the same tags through HTTP."""
    from tagserve.model.artifact import load
    from tagserve.model.predictor import Predictor
    from tagserve.model.schemes import convert

    words = ["Harry", "Potter", "and", "Hermione", "Granger"]
    expected = Predictor(load(tiny_artifact)).predict([words])[0]
    with TestClient(tiny_app(tiny_artifact.parent)) as client:
        result = client.post("/tag", json={"text": " ".join(words)}).json()["results"][0]
    assert [t["tag"] for t in result["tokens"]] == convert(expected.tags, "BIOES", "BIO")
    assert [t["score"] for t in result["tokens"]] == [round(s, 4) for s in expected.scores]


def test_models_health_metrics(tiny_artifact: Path) -> None:
    app = tiny_app(tiny_artifact.parent)
    client = TestClient(app)
    assert client.get("/health").status_code == 503  # lifespan not started: models not loaded
    with client:
        assert client.get("/health").json() == {"status": "ok"}
        models = client.get("/models").json()
        assert models["default"] == "tiny"
        [info] = models["models"]
        assert info["name"] == "tiny" and "B-PER" in info["labels"]
        client.post("/tag", json={"text": "Harry Potter"})
        client.post("/tag", json={"text": "x", "model": "nope"})
        metrics = client.get("/metrics").text
    assert sample_value(metrics, "tagserve_requests_total", route="/tag", status="200") == 1
    assert sample_value(metrics, "tagserve_requests_total", route="/tag", status="404") == 1
    assert sample_value(metrics, "tagserve_batch_sentences_count", model="tiny") == 1
    assert sample_value(metrics, "tagserve_queue_sentences", model="tiny") == 0
    assert has_sample(metrics, "tagserve_request_seconds_bucket")


def test_docs_page_uses_only_local_assets(tiny_artifact: Path) -> None:
    with TestClient(tiny_app(tiny_artifact.parent)) as client:
        html = client.get("/docs").text
        urls = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html) + re.findall(
            r"url: '([^']+)'", html
        )
        assert urls, html
        for url in urls:
            assert url.startswith("/"), f"docs page loads {url} from outside the app"
            assert client.get(url).status_code == 200
        spec = client.get("/openapi.json").json()
    assert set(spec["paths"]) == {"/tag", "/models", "/health", "/livez", "/metrics"}
    tag = spec["paths"]["/tag"]["post"]
    assert {"400", "404", "413", "422", "503"} <= set(tag["responses"])
    assert spec["components"]["schemas"]["TagRequest"]["examples"]


def test_cors_is_off_unless_configured(tiny_artifact: Path) -> None:
    headers = {"Origin": "https://example.com", "Access-Control-Request-Method": "POST"}
    with TestClient(tiny_app(tiny_artifact.parent)) as client:
        assert "access-control-allow-origin" not in client.options("/tag", headers=headers).headers
    with TestClient(tiny_app(tiny_artifact.parent, cors_origins=["https://example.com"])) as client:
        response = client.options("/tag", headers=headers)
        assert response.headers["access-control-allow-origin"] == "https://example.com"


def test_api_keys_guard_tag_models_and_metrics_only(tiny_artifact: Path, tmp_path: Path) -> None:
    secrets = tmp_path / "keys"
    secrets.write_text("# mounted secret\nfile-key\n")
    app = tiny_app(tiny_artifact.parent, api_keys="key-one, key-two", api_keys_file=secrets)
    with TestClient(app) as client:
        body = {"text": "Harry Potter"}
        missing = client.post("/tag", json=body)
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"] == 'Bearer realm="tagserve"'
        assert "Authorization: Bearer KEY" in missing.json()["detail"]
        wrong = client.post("/tag", json=body, headers={"Authorization": "Bearer key-three"})
        assert wrong.status_code == 401
        assert "key-three" not in wrong.text
        for key in ("key-one", "key-two", "file-key"):
            right = client.post("/tag", json=body, headers={"Authorization": f"Bearer {key}"})
            assert right.status_code == 200
        for path in ("/models", "/metrics"):
            assert client.get(path).status_code == 401
            assert client.get(path, headers={"Authorization": "Bearer key-one"}).status_code == 200
        for path in ("/health", "/docs", "/", "/openapi.json", "/static/demo.js"):
            assert client.get(path).status_code == 200, path


def test_api_keys_never_appear_in_the_settings_repr(tiny_artifact: Path) -> None:
    settings = Settings(models_dir=tiny_artifact.parent, api_keys="very-secret")
    assert settings.all_api_keys() == ["very-secret"]
    assert "very-secret" not in repr(settings) and "very-secret" not in str(settings)


def test_without_keys_every_route_is_open(tiny_artifact: Path) -> None:
    with TestClient(tiny_app(tiny_artifact.parent)) as client:
        assert client.post("/tag", json={"text": "Harry"}).status_code == 200
        assert client.get("/metrics").status_code == 200
