"""Schemathesis against the app's own /openapi.json: no 5xx, no response that breaks the schema."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from model.artifact import save
from tests.conftest import make_bundle
from tests.live_server import LiveServer, start_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    models_dir = tmp_path_factory.mktemp("models")
    save(make_bundle(), models_dir / "tiny")
    live = start_server(models_dir, default_model="tiny", max_text_chars="2000")
    yield live
    live.stop()


@pytest.fixture(scope="module")
def api_schema(server: LiveServer):  # type: ignore[no-untyped-def]
    return schemathesis.openapi.from_url(f"{server.url}/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_schema(case) -> None:  # type: ignore[no-untyped-def]
    case.call_and_validate(
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
        timeout=30,
    )
