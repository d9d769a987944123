"""Hostile input through the whole service: arbitrary Unicode never breaks offsets or spans."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tagserve.model.artifact import save
from tests.conftest import make_bundle
from tests.service_helpers import tiny_app
from tests.test_service_api import check_offsets

# Everything but lone surrogates (not valid in JSON text): controls, combining marks,
# astral characters (emoji, CJK extension B), separators of every kind.
ANY_CHARACTER = st.characters(exclude_categories=("Cs",))
HOSTILE_PIECES = st.sampled_from(
    [
        "\x00",
        "\x1b[31m",
        "\r\n",
        "\u0301\u0301\u0301",
        "\U0001f9d1\u200d\U0001f680",
        "\U00020000",
        "\u202e",
        "\ufeff",
        "a" * 3000,
        "-" * 500,
        "U.S.",
        "Harry Potter",
        "  \n\n  ",
    ]
)
HOSTILE_TEXT = st.lists(
    st.one_of(HOSTILE_PIECES, st.text(ANY_CHARACTER, min_size=1, max_size=20)), max_size=25
).map("".join)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    # Random weights tag at random, so entities of every shape come back to be checked.
    models_dir = tmp_path_factory.mktemp("models")
    save(make_bundle(seed=3), models_dir / "tiny")
    with TestClient(tiny_app(models_dir, max_sentence_tokens=16)) as test_client:
        yield test_client


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=HOSTILE_TEXT)
def test_offsets_and_entities_hold_for_any_text(client: TestClient, text: str) -> None:
    response = client.post("/tag", json={"text": text})
    assert response.status_code == 200, response.text
    [result] = response.json()["results"]
    assert result["text"] == text
    check_offsets(text, result)
    if text.strip() == "":
        assert result["tokens"] == [] and result["entities"] == []


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tokens=st.lists(st.lists(st.text(ANY_CHARACTER, max_size=12), max_size=12), max_size=4))
def test_pretokenized_input_never_gives_a_server_error(
    client: TestClient, tokens: list[list[str]]
) -> None:
    response = client.post("/tag", json={"tokens": tokens})
    assert response.status_code in {200, 422}, response.text
    if response.status_code == 422:
        assert "tokens" in response.json()["detail"]
        return
    results = response.json()["results"]
    assert len(results) == len(tokens)
    for result in results:
        check_offsets(result["text"], result)


def test_error_bodies_carry_no_traceback_or_path(client: TestClient, tmp_path: Path) -> None:
    models_dir = str(client.app.state.settings.models_dir)  # type: ignore[attr-defined]
    for name in (f"{models_dir}/tiny", "../../etc/passwd", "tiny/../tiny"):
        answer = client.post("/tag", json={"text": "x", "model": name})
        assert answer.status_code == 404
        assert answer.json()["detail"] == f"model: unknown model {name!r}; loaded models: tiny"
    answers = [
        client.post(
            "/tag", content=b'{"text": "\x00', headers={"content-type": "application/json"}
        ),
        client.post("/tag", json={"text": ["not", "a", "string"]}),
        client.post("/tag", json={"text": "x", "model": "m" * 10_000}),
        client.post("/tag", json={"text": "x" * 200_000}),
    ]
    for answer in answers:
        assert 400 <= answer.status_code < 500, answer.text
        detail = answer.json()["detail"]
        assert "Traceback" not in detail and "site-packages" not in detail
        assert models_dir not in detail and len(detail) < 400
