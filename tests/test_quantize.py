"""int8 serving (tagserve.model.quantize): the quantized encoder agrees with float32."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tagserve.model.artifact import load
from tagserve.model.predictor import Predictor
from tagserve.model.quantize import with_precision
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
