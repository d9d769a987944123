"""The lean ``POST /tag`` route answers exactly as the FastAPI route would, valid requests
and every kind of bad one, and takes the valid ones itself."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tagserve.service.api import fast_tag
from tagserve.service.api.fast_tag import FastTagRoute
from tests.service_helpers import tiny_app

JSON = {"content-type": "application/json"}
REQUESTS: list[tuple[Any, dict[str, str]]] = [
    (b'{"text": "Harry Potter went to London"}', JSON),
    (b'{"texts": ["a b", "", "Paris is nice"], "model": "tiny"}', JSON),
    (b'{"tokens": [["New", "York"]]}', JSON),
    (b'{"text": "x", "model": "nope"}', JSON),
    (b'{"text": "x", "intent_top_k": 3}', JSON),
    (b'{"text": "x", "extra": 1}', JSON),
    (b'{"text": 5}', JSON),
    (b'{"text": "x", "texts": ["y"]}', JSON),
    (b'{"text": "\\ud800"}', JSON),
    (b'{"text": "x"', JSON),
    (b"", JSON),
    (b"[]", JSON),
    (b'{"text": "x"}', {"content-type": "text/plain"}),
    (b'{"text": "x"}', {}),
    (b'{"tokens": [["a b"]]}', JSON),
]


def _answers(client: TestClient, headers: dict[str, str] | None = None) -> list[tuple]:
    answers = []
    for body, request_headers in REQUESTS:
        response = client.post("/tag", content=body, headers={**request_headers, **(headers or {})})
        answers.append((response.status_code, response.text, response.headers["content-type"]))
    return answers


def _without_fast_route(app: Any) -> Any:
    app.router.routes[:] = [r for r in app.router.routes if not isinstance(r, FastTagRoute)]
    return app


@pytest.mark.parametrize("keys", [None, "k1"])
def test_answers_equal_the_fastapi_route(tiny_artifact: Path, keys: str | None) -> None:
    settings = {"api_keys": [keys]} if keys else {}
    auth_cases = (
        [None] if not keys else [{"authorization": "Bearer k1"}, {}, {"authorization": "Bearer no"}]
    )
    with (
        TestClient(tiny_app(tiny_artifact.parent, **settings)) as fast,
        TestClient(_without_fast_route(tiny_app(tiny_artifact.parent, **settings))) as declared,
    ):
        for headers in auth_cases:
            assert _answers(fast, headers) == _answers(declared, headers)


def test_valid_requests_skip_fastapi(tiny_artifact: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    parsed: list[bool] = []
    original = fast_tag.FastTag._parse

    def spy(self: Any, scope: Any, body: bytes) -> Any:
        result = original(self, scope, body)
        parsed.append(result is not None)
        return result

    monkeypatch.setattr(fast_tag.FastTag, "_parse", spy)
    with TestClient(tiny_app(tiny_artifact.parent)) as client:
        assert client.post("/tag", json={"text": "Harry Potter"}).status_code == 200
        assert client.post("/tag", json={"text": 5}).status_code == 422
    assert parsed == [True, False]


def test_openapi_still_describes_tag(tiny_artifact: Path) -> None:
    with TestClient(tiny_app(tiny_artifact.parent)) as client:
        schema = client.get("/openapi.json").json()
    post = schema["paths"]["/tag"]["post"]
    assert post["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "TagRequest"
    )
    assert {"200", "401", "404", "422", "503"} <= set(post["responses"])
