"""One reading of credentials on every protected route: the same matrix of Authorization
headers gets the same answer on POST /tag (served as plain ASGI) and on the FastAPI GET
routes, and the key is checked before the body is parsed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.service_helpers import tiny_app

GOOD_BODY = b'{"text": "Harry Potter"}'
# Each case: the Authorization headers sent (in order) and the status every protected
# route must give.
MATRIX: list[tuple[list[str], int]] = [
    ([], 401),
    (["Bearer wrong"], 401),
    (["Bearer k1"], 200),
    (["bearer k1"], 200),  # the scheme is case-insensitive (RFC 7235)
    (["Bearer  k1 "], 200),
    (["Basic k1"], 401),
    (["Bearer"], 401),
    (["Bearer wrong", "Bearer k1"], 400),  # two headers: refused, never read one of them
    (["Bearer k1", "Bearer wrong"], 400),
    (["Bearer k1", "Bearer k1"], 400),
]
PROTECTED = [("POST", "/tag"), ("GET", "/models"), ("GET", "/metrics")]


@pytest.fixture
def client(tiny_artifact: Path) -> Iterator[TestClient]:
    with TestClient(tiny_app(tiny_artifact.parent, api_keys=["k1"])) as test_client:
        yield test_client


def _send(client: TestClient, method: str, path: str, authorizations: list[str], body: bytes):  # type: ignore[no-untyped-def]
    headers = [("authorization", value) for value in authorizations]
    if method == "POST":
        headers.append(("content-type", "application/json"))
    return client.request(method, path, headers=headers, content=body if method == "POST" else None)


@pytest.mark.parametrize(("authorizations", "status"), MATRIX)
def test_every_protected_route_reads_credentials_alike(
    client: TestClient, authorizations: list[str], status: int
) -> None:
    answers = {}
    for method, path in PROTECTED:
        response = _send(client, method, path, authorizations, GOOD_BODY)
        answers[f"{method} {path}"] = (
            response.status_code,
            response.json()["detail"] if status != 200 else "",
        )
        if status == 401:
            assert response.headers["www-authenticate"] == 'Bearer realm="tagserve"'
    assert {answer for answer in answers.values()} == {next(iter(answers.values()))}, answers
    assert next(iter(answers.values()))[0] == status


@pytest.mark.parametrize("body", [b'{"text": ', b"\xff\xfe", b"[]", b""])
def test_the_key_is_checked_before_the_body_is_read(client: TestClient, body: bytes) -> None:
    response = _send(client, "POST", "/tag", [], body)
    assert response.status_code == 401
    assert response.json()["detail"].startswith("this server needs an API key")
    assert _send(client, "POST", "/tag", ["Bearer k1"], body).status_code in {400, 422}


def test_open_routes_need_no_key(client: TestClient) -> None:
    for path in ("/health", "/livez"):
        assert client.get(path, headers={"authorization": "Bearer wrong"}).status_code == 200
