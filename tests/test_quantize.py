"""int8 serving (tagserve.model.quantize): the quantized encoder agrees with float32."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient
from pydantic import ValidationError

from tagserve.model.artifact import load
from tagserve.model.artifact_files import ArtifactError
from tagserve.model.predictor import Predictor
from tagserve.model.quantize import with_precision
from tagserve.service.api.app import create_app
from tagserve.service.inference.client import ModelClient
from tagserve.service.inference.registry import model_names, serve_in_threads, start_owners
from tagserve.service.metrics import Metrics
from tagserve.service.settings import Settings
from tagserve.training.readers import read_dataset

# Each shipped model and the test split it is checked on.
SAMPLES = {"ner": "conll2003/test.txt", "slots": "atis/test"}
# Dynamic int8 rounds every activation: tags may flip where two paths score within rounding
# of each other, so agreement is asserted per token, not per sentence.
MIN_TOKEN_AGREEMENT = 0.995


def test_float32_is_the_bundle_itself(tiny_bundle) -> None:
    assert with_precision(tiny_bundle, "float32") is tiny_bundle


def test_int8_replaces_the_encoder_and_output_layer(tiny_bundle) -> None:
    float_rnn = type(tiny_bundle.network.rnn)
    with_precision(tiny_bundle, "int8")
    assert type(tiny_bundle.network.rnn) is not float_rnn
    assert "quantized" in type(tiny_bundle.network.rnn).__module__
    assert "quantized" in type(tiny_bundle.network.emission).__module__
    # Still tags: shape and labels as before.
    (tagged,) = Predictor(tiny_bundle).predict([["Alice", "lives", "in", "Paris"]])
    assert len(tagged.tags) == 4


def test_unknown_precision_is_refused(tiny_bundle) -> None:
    with pytest.raises(ValueError, match="float32, int8"):
        with_precision(tiny_bundle, "int4")  # type: ignore[arg-type]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_int8_tags_agree_with_float32(name: str, shipped_models_dir: Path, data_dir: Path) -> None:
    torch.set_num_threads(1)
    sentences = [e.tokens for e in read_dataset(data_dir / SAMPLES[name])[:600]]
    if load(shipped_models_dir / name).card.tokenizer.lowercase:
        sentences = [[t.lower() for t in s] for s in sentences]
    reference = Predictor(load(shipped_models_dir / name)).predict(sentences)
    quantized = Predictor(with_precision(load(shipped_models_dir / name), "int8"))
    tagged = quantized.predict(sentences)
    pairs = [
        (a, b)
        for r, q in zip(reference, tagged, strict=True)
        for a, b in zip(r.tags, q.tags, strict=True)
    ]
    agreement = sum(a == b for a, b in pairs) / len(pairs)
    assert agreement >= MIN_TOKEN_AGREEMENT, agreement
    # Confidence moves with rounding but stays a probability near the float32 one.
    drift = max(
        abs(a - b)
        for r, q in zip(reference, tagged, strict=True)
        for a, b in zip(r.scores, q.scores, strict=True)
    )
    assert drift < 0.2


SENTENCES = [["Harry", "Potter", "went", "to", "London"], ["x"], ["a", "b", "c"]]


def _scores(tagged: list) -> list[float]:
    return [score for t in tagged for score in t.scores]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("tiny=int8", {"tiny": "int8"}),
        (" tiny = int8 , other=float32 ", {"tiny": "int8", "other": "float32"}),
        ('{"*": "int8"}', {"*": "int8"}),
        ("", {}),
    ],
)
def test_precision_setting_reads_pairs_and_json(tiny_artifact: Path, raw: str, expected) -> None:
    settings = Settings(models_dir=tiny_artifact.parent, precision=raw)
    assert settings.precision == expected


@pytest.mark.parametrize("raw", ["tiny", "tiny=int4", "=int8", "{oops"])
def test_precision_setting_refuses_what_it_cannot_read(tiny_artifact: Path, raw: str) -> None:
    with pytest.raises(ValidationError, match="precision"):
        Settings(models_dir=tiny_artifact.parent, precision=raw)


def test_precision_for_prefers_the_setting_then_star_then_the_card(tiny_artifact: Path) -> None:
    settings = Settings(models_dir=tiny_artifact.parent, precision="tiny=float32,*=int8")
    assert settings.precision_for("tiny", "int8") == "float32"
    assert settings.precision_for("other", "float32") == "int8"
    assert Settings(models_dir=tiny_artifact.parent).precision_for("x", "int8") == "int8"


def test_a_precision_for_a_model_not_served_stops_start_up(tiny_artifact: Path) -> None:
    settings = Settings(models_dir=tiny_artifact.parent, default_model="tiny", precision="nr=int8")
    with pytest.raises(ArtifactError, match="TAGSERVE_PRECISION names 'nr'"):
        model_names(settings)


def test_in_process_serving_applies_the_precision_and_models_says_so(tiny_artifact: Path) -> None:
    settings = Settings(
        models_dir=tiny_artifact.parent, default_model="tiny", precision="tiny=int8"
    )
    models = serve_in_threads(settings, Metrics())
    served = models["tiny"].tagger._tagger  # type: ignore[attr-defined]
    assert "quantized" in type(served.bundle.network.rnn).__module__
    with TestClient(create_app(settings, models)) as client:
        (described,) = client.get("/models").json()["models"]
        assert described["precision"] == "int8"
        answer = client.post("/tag", json={"tokens": SENTENCES[:1]}).json()
    local = Predictor(with_precision(load(tiny_artifact), "int8")).predict(SENTENCES[:1])
    scores = [t["score"] for t in answer["results"][0]["tokens"]]
    assert scores == pytest.approx(local[0].scores, abs=1e-4)  # /tag rounds to 4 places


@pytest.mark.slow
def test_a_model_worker_serves_in_the_precision_asked_for(tiny_artifact: Path) -> None:
    settings = Settings(
        models_dir=tiny_artifact.parent, default_model="tiny", precision="tiny=int8"
    )
    (owner,) = start_owners(settings, Metrics(), ["tiny"]).values()
    try:
        remote = asyncio.run(
            ModelClient(owner.address, batch_timeout_s=30).predict_async(SENTENCES)
        )
    finally:
        owner.close()
    quantized = Predictor(with_precision(load(tiny_artifact), "int8")).predict(SENTENCES)
    plain = Predictor(load(tiny_artifact)).predict(SENTENCES)
    assert _scores(remote) == pytest.approx(_scores(quantized), abs=1e-6)
    # Random weights: rounding to int8 moves the scores, so float32 would be told apart.
    assert _scores(remote) != pytest.approx(_scores(plain), abs=1e-6)
