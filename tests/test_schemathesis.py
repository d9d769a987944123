"""Schemathesis against the app's own /openapi.json: no 5xx, no response that breaks the schema.

Each operation's cases come from ``operation.as_strategy()`` and run under plain Hypothesis, not
schemathesis' pytest plugin (which breaks on pytest 9.2, see README "Dependencies")."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tagserve.model.artifact import save
from tests.conftest import make_bundle
from tests.live_server import LiveServer, start_server

# Starts real processes (a tagserve serve or a tagserve command): see the slow marker.
pytestmark = pytest.mark.slow

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    models_dir = tmp_path_factory.mktemp("models")
    save(make_bundle(), models_dir / "tiny")
    live = start_server(models_dir, default_model="tiny", max_text_chars="2000")
    yield live
    live.stop()


def test_api_conforms_to_its_schema(server: LiveServer) -> None:
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    labels = sorted(operation.label for operation in operations)
    assert labels == ["GET /health", "GET /livez", "GET /metrics", "GET /models", "POST /tag"], (
        labels
    )
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None
        )
        def check(case) -> None:  # type: ignore[no-untyped-def]
            case.call_and_validate(checks=CHECKS, timeout=30)

        check()
