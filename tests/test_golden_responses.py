"""Refactoring changes no answer: 200 fixed requests give the status codes and bodies recorded
from the code before the package move (tests/golden/)."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi.testclient import TestClient

from tagserve.service.api.app import create_app
from tagserve.service.settings import Settings
from tests.golden.requests import RESPONSES, golden_requests


def test_recorded_requests_are_the_generated_ones() -> None:
    recorded = json.loads(RESPONSES.read_text(encoding="utf-8"))
    assert [a["request"] for a in recorded] == golden_requests()


def test_answers_equal_the_recorded_ones(shipped_models_dir: Path) -> None:
    recorded = json.loads(RESPONSES.read_text(encoding="utf-8"))
    # The models the answers were recorded with (a model shipped later would change the
    # "loaded models" list of the 404s).
    app = create_app(Settings(models_dir=shipped_models_dir, models=["ner", "slots"]))
    mismatches = []
    with TestClient(app) as client:
        for i, answer in enumerate(recorded):
            response = client.post("/tag", json=answer["request"])
            if (response.status_code, response.json()) != (answer["status"], answer["body"]):
                mismatches.append((i, answer["request"], response.status_code))
    assert not mismatches, f"{len(mismatches)} of {len(recorded)} answers changed: {mismatches[:3]}"
