"""The default recipe (tagserve.training.recipe): valid configs that scale with the data."""

from __future__ import annotations

import pytest

from tagserve.training.config import TrainConfig
from tagserve.training.recipe import MAX_BIOES_TYPES, default_sections


def _config(sentences: int, types: int = 4, intents: bool = False, **kw) -> TrainConfig:
    raw = default_sections(sentences, types, intents, **kw)
    return TrainConfig.model_validate({"data": {"train": "t", "dev": "d"}, **raw})


@pytest.mark.parametrize("sentences", [1, 250, 1_000, 4_000, 14_041, 1_000_000])
def test_every_size_gives_a_valid_config_with_enough_updates(sentences: int) -> None:
    config = _config(sentences)
    training = config.training
    assert 40 <= training.epochs <= 100
    # Small data gets small batches: at least a few updates per epoch at every size.
    updates = training.epochs * max(sentences // training.batch_size, 1)
    assert updates >= min(training.epochs * 30, training.epochs * sentences)


def test_small_data_trains_longer_with_smaller_batches_and_no_average() -> None:
    small, large = _config(250).training, _config(14_041).training
    assert small.batch_size < large.batch_size
    assert small.epochs > large.epochs
    assert small.patience > large.patience
    assert small.weight_average == 0 and large.weight_average > 0


def test_many_types_switch_to_bio() -> None:
    assert _config(1000, MAX_BIOES_TYPES).model.scheme == "BIOES"
    assert _config(1000, MAX_BIOES_TYPES + 1).model.scheme == "BIO"


def test_intents_turn_on_the_head_and_frame_selection() -> None:
    config = _config(1000, intents=True)
    assert config.model.intents and config.training.select_by == "frame_accuracy"
    assert _config(1000).training.select_by == "f1"


def test_a_lower_casing_model_gets_no_case_augmentation() -> None:
    lowered = _config(1000, tokenizer="atis", lowercase=True)
    assert lowered.training.case_augmentation.lower == lowered.training.case_augmentation.upper == 0
    assert lowered.artifact.tokenizer == "atis" and lowered.artifact.lowercase
    assert _config(1000).training.case_augmentation.lower > 0
