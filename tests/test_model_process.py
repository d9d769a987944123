"""The model's child process: same answers as in-process, errors stay per batch, clean exit."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tagserve.model.artifact import ModelBundle
from tagserve.model.predictor import Predictor
from tagserve.service.app import create_app
from tagserve.service.metrics import Metrics
from tagserve.service.model_process import ModelProcess, ModelProcessError
from tagserve.service.registry import load_models
from tagserve.service.settings import Settings

SENTENCES = [["Harry", "Potter", "went", "to", "London"], ["x"], ["a", "b", "c"]]


def test_child_answers_equal_in_process_answers(tiny_bundle: ModelBundle) -> None:
    predictor = Predictor(tiny_bundle, batch_size=2)
    process = ModelProcess(predictor, "tiny", torch_threads=1)
    try:
        assert process.pid is not None and process.pid != os.getpid()
        assert process.predict(SENTENCES) == predictor.predict(SENTENCES)
    finally:
        process.close()
    assert not process._process.is_alive()


def test_an_error_fails_one_batch_and_the_child_goes_on(tiny_bundle: ModelBundle) -> None:
    process = ModelProcess(Predictor(tiny_bundle), "tiny", torch_threads=1)
    try:
        with pytest.raises(ModelProcessError, match="model process tiny: TypeError"):
            process.predict([[1, 2]])  # type: ignore[list-item]
        assert len(process.predict(SENTENCES)) == 3
    finally:
        process.close()


def test_a_dead_child_is_reported_not_hung(tiny_bundle: ModelBundle) -> None:
    process = ModelProcess(Predictor(tiny_bundle), "tiny", torch_threads=1)
    process._process.kill()
    process._process.join(5)
    with pytest.raises(ModelProcessError, match="model process tiny is gone"):
        process.predict(SENTENCES)
    process.close()


def test_health_turns_503_when_a_model_process_dies(tiny_artifact: Path) -> None:
    settings = Settings(models_dir=tiny_artifact.parent, default_model="tiny")
    metrics = Metrics()
    models = load_models(settings, metrics, in_processes=True)
    with TestClient(create_app(settings, models, metrics)) as client:
        assert client.get("/health").status_code == 200
        assert client.post("/tag", json={"text": "Harry Potter"}).status_code == 200
        process = models["tiny"].process
        assert process is not None
        process._process.kill()
        process._process.join(5)
        health = client.get("/health")
        assert (health.status_code, health.json()) == (
            503,
            {"status": "model process down: tiny"},
        )
        failed = client.post("/tag", json={"text": "Harry Potter"})
        assert failed.status_code == 500
        assert failed.json() == {"detail": "model tiny failed: ModelProcessError"}
