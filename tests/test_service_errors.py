"""Every bad input gets its documented 4xx and a message naming the field and the limit."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.service_helpers import tiny_app

CASES = [
    (
        {"text": "x" * 101},
        422,
        "text: 101 characters exceed the limit of 100 (TAGSERVE_MAX_TEXT_CHARS)",
    ),
    (
        {"texts": ["a", "x" * 101]},
        422,
        "texts[1]: 101 characters exceed the limit of 100 (TAGSERVE_MAX_TEXT_CHARS)",
    ),
    (
        {"texts": ["a"] * 4},
        422,
        "texts: 4 texts exceed the limit of 3 per request (TAGSERVE_MAX_TEXTS)",
    ),
    (
        {"tokens": [["a"]] * 4},
        422,
        "tokens: 4 token lists exceed the limit of 3 per request (TAGSERVE_MAX_TEXTS)",
    ),
    (
        {"tokens": [["a", ""]]},
        422,
        "tokens[0][1]: a token must be non-empty and contain no whitespace",
    ),
    (
        {"tokens": [["a b"]]},
        422,
        "tokens[0][0]: a token must be non-empty and contain no whitespace",
    ),
    (
        {"text": "a " * 45},
        422,
        "text: 45 tokens exceed the limit of 40 per request (TAGSERVE_MAX_TOKENS)",
    ),
    ({"text": 5}, 422, "text: Input should be a valid string"),
    ({"texts": "abc"}, 422, "texts: Input should be a valid array"),
    ({"tokens": [[1]]}, 422, "tokens.0.0: Input should be a valid string"),
    ({"text": "a", "model": "nope"}, 404, "model: unknown model 'nope'; loaded models: tiny"),
    ({}, 422, "body: give exactly one of 'text', 'texts' or 'tokens' (got none)"),
    (
        {"text": "a", "tokens": [["a"]]},
        422,
        "body: give exactly one of 'text', 'texts' or 'tokens' (got text, tokens)",
    ),
    ({"text": "a", "colour": "red"}, 422, "colour: Extra inputs are not permitted"),
    ([1, 2], 422, "body: Input should be an object"),
]


@pytest.fixture
def client(tiny_artifact: Path):  # type: ignore[no-untyped-def]
    app = tiny_app(
        tiny_artifact.parent, max_text_chars=100, max_texts=3, max_tokens=40, max_body_bytes=2048
    )
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.mark.parametrize(("body", "status", "detail"), CASES)
def test_bad_input(client: TestClient, body: object, status: int, detail: str) -> None:
    response = client.post("/tag", json=body)
    assert response.status_code == status
    assert response.json() == {"detail": detail}


def test_malformed_json(client: TestClient) -> None:
    response = client.post(
        "/tag", content=b'{"text": ', headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["detail"].startswith("request body is not valid JSON: ")


def test_body_over_limit_by_content_length(client: TestClient) -> None:
    response = client.post("/tag", json={"text": "a" * 3000})
    assert response.status_code == 413
    assert response.json() == {
        "detail": "request body exceeds the limit of 2048 bytes (TAGSERVE_MAX_BODY_BYTES)"
    }


def test_body_over_limit_while_streaming(client: TestClient) -> None:
    def chunks():  # type: ignore[no-untyped-def]
        yield b'{"text": "'
        for _ in range(10):
            yield b"a" * 500
        yield b'"}'

    response = client.post("/tag", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413


def test_empty_and_whitespace_texts_are_not_errors(client: TestClient) -> None:
    for text in ["", " \n\t "]:
        response = client.post("/tag", json={"text": text})
        assert response.status_code == 200
        assert response.json()["results"] == [{"text": text, "tokens": [], "entities": []}]


def test_errors_leave_the_service_healthy(client: TestClient) -> None:
    for body, _, _ in CASES:
        client.post("/tag", json=body)
    assert client.get("/health").status_code == 200
    assert client.post("/tag", json={"text": "still fine"}).status_code == 200


def test_unknown_route_and_method(client: TestClient) -> None:
    assert client.get("/nope").json() == {"detail": "Not Found"}
    response = client.get("/tag")
    assert response.status_code == 405 and response.json() == {"detail": "Method Not Allowed"}


@pytest.mark.parametrize(
    ("body", "headers", "status", "start"),
    [
        (
            b"[" * 300 + b"]" * 300,
            {},
            400,
            "request body is not valid JSON: nested deeper than 200 levels at line 1 column",
        ),
        (
            b'{"text": "caf\xe9"}',
            {},
            400,
            "request body is not valid UTF-8: byte 0xe9 at offset 13",
        ),
        (
            b'{"text": "x"}',
            {"content-encoding": "gzip"},
            415,
            "content-encoding 'gzip' is not supported",
        ),
        (
            b'{"text": "x"}',
            {"content-type": "text/plain"},
            415,
            "content-type 'text/plain' is not supported: send application/json",
        ),
        (
            b'{"text": "x",}',
            {},
            400,
            "request body is not valid JSON: trailing comma at line 1 column 14",
        ),
    ],
)
def test_unreadable_bodies_name_the_cause(
    client: TestClient, body: bytes, headers: dict[str, str], status: int, start: str
) -> None:
    sent = {"content-type": "application/json", **headers}
    response = client.post("/tag", content=body, headers=sent)
    assert response.status_code == status
    assert response.json()["detail"].startswith(start), response.json()
