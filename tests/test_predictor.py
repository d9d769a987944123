"""Predictor and artifacts: batch equals single, save → load is lossless, bad files are named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tagserve.model.artifact import ArtifactError, ModelBundle, load, save
from tagserve.model.predictor import Predictor
from tests.conftest import make_bundle

SENTENCES = [
    ["Harry", "Potter", "and", "Hermione", "Granger", "invented", "a", "new", "spell", "."],
    ["The"],
    [],
    ["Extraordinarilylongwordthatexceedsthecharacterlimit", "of", "thirty", "characters"],
    ["Ünïcödé", "東京", "🙂", "x"],
]


@pytest.mark.parametrize("decoder", ["crf", "softmax"])
def test_batch_equals_single(decoder: str) -> None:
    predictor = Predictor(make_bundle(decoder=decoder, seed=1))
    batched = predictor.predict(SENTENCES)
    for sentence, together in zip(SENTENCES, batched, strict=True):
        [alone] = predictor.predict([sentence])
        assert together.tags == alone.tags
        assert together.scores == pytest.approx(alone.scores, abs=1e-5)
        assert len(together.tags) == len(sentence)
        assert all(0.0 <= s <= 1.0 for s in together.scores)


def test_predict_does_not_mutate_and_handles_empty_batches() -> None:
    predictor = Predictor(make_bundle(), batch_size=2)
    copy = [list(s) for s in SENTENCES]
    predictor.predict(SENTENCES)
    assert copy == SENTENCES
    assert predictor.predict([]) == []


def test_small_internal_batches_keep_input_order() -> None:
    predictor = Predictor(make_bundle(seed=2), batch_size=1)
    reference = Predictor(make_bundle(seed=2), batch_size=64).predict(SENTENCES)
    assert [p.tags for p in predictor.predict(SENTENCES)] == [p.tags for p in reference]


def test_save_load_gives_identical_predictions(tmp_path: Path) -> None:
    bundle = make_bundle(seed=3)
    save(bundle, tmp_path / "m")
    loaded = load(tmp_path / "m")
    assert set(loaded.network.state_dict()) == set(bundle.network.state_dict())
    # The word table is stored as float16: compare against the same rounding in memory.
    with torch.no_grad():
        bundle.network.word_embedding.weight.copy_(
            bundle.network.word_embedding.weight.half().float()
        )
    before = Predictor(bundle).predict(SENTENCES)
    after = Predictor(loaded).predict(SENTENCES)
    assert [p.tags for p in before] == [p.tags for p in after]
    for b, a in zip(before, after, strict=True):
        assert b.scores == pytest.approx(a.scores, abs=1e-6)
    assert loaded.card == bundle.card
    assert loaded.labels == bundle.labels
    assert not loaded.network.training


def test_artifact_holds_no_pickle(tmp_path: Path) -> None:
    save(make_bundle(), tmp_path / "m")
    names = sorted(p.name for p in (tmp_path / "m").iterdir())
    assert names == [
        "config.json",
        "labels.json",
        "metadata.json",
        "vocab.json",
        "weights.safetensors",
    ]
    for name in names[:-1]:
        json.loads((tmp_path / "m" / name).read_text())


def test_truncated_weights_are_named(tmp_path: Path) -> None:
    save(make_bundle(), tmp_path / "m")
    weights = tmp_path / "m" / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ArtifactError, match=r"weights\.safetensors: cannot read weights"):
        load(tmp_path / "m")


def test_unknown_labels_are_named(tmp_path: Path) -> None:
    save(make_bundle(), tmp_path / "m")
    labels = tmp_path / "m" / "labels.json"
    labels.write_text(json.dumps({"scheme": "BIOES", "labels": ["O", "Q-PER"]}))
    with pytest.raises(
        ArtifactError, match=r"labels\.json: invalid label set: malformed tag 'Q-PER'"
    ):
        load(tmp_path / "m")


def test_label_count_mismatch_is_named(tmp_path: Path) -> None:
    save(make_bundle(), tmp_path / "m")
    labels = tmp_path / "m" / "labels.json"
    labels.write_text(json.dumps({"scheme": "BIOES", "labels": ["O", "S-PER"]}))
    with pytest.raises(
        ArtifactError, match=r"labels\.json: config\.json expects 17 tags, file has 2"
    ):
        load(tmp_path / "m")


def test_missing_file_is_named(tmp_path: Path) -> None:
    save(make_bundle(), tmp_path / "m")
    (tmp_path / "m" / "vocab.json").unlink()
    with pytest.raises(ArtifactError, match=r"vocab\.json: file is missing"):
        load(tmp_path / "m")


def test_unknown_config_key_is_named(tmp_path: Path) -> None:
    save(make_bundle(), tmp_path / "m")
    config = tmp_path / "m" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "hiden_size": 3}))
    with pytest.raises(
        ArtifactError, match=r"config\.json: hiden_size: Extra inputs are not permitted"
    ):
        load(tmp_path / "m")


@pytest.mark.parametrize("capacity", [3, 12, 10_000])
def test_word_cache_changes_nothing_but_speed(tiny_bundle: ModelBundle, capacity: int) -> None:
    # Capacity 3 is smaller than one batch (uncached fallback), 12 forces start-overs.
    sentences = [
        ["Harry", "Potter", "went", "to", "London"],
        ["London", "is", "big"],
        ["Hermione", "went", "to", "Paris", "and", "Rome"],
        ["x"],
        [],
    ] * 3
    plain = Predictor(tiny_bundle, batch_size=2).predict(sentences)
    cached = Predictor(tiny_bundle, batch_size=2, cache_words=capacity)
    for _ in range(2):
        again = cached.predict(sentences)
        assert [a.tags for a in again] == [p.tags for p in plain]
        for a, p in zip(again, plain, strict=True):
            assert a.scores == pytest.approx(p.scores, abs=1e-6)
    assert cached.cache is not None and len(cached.cache) <= capacity


@pytest.mark.parametrize(
    "lengths",
    [[10, 10, 1, 1], [6, 6, 6, 6], [9, 9, 8, 5, 5, 5, 3, 2, 1, 1]],
    ids=["mixed run then equal run", "one equal run", "mixed runs"],
)
def test_padded_lstm_runs_give_the_packed_states(lengths: list[int]) -> None:
    # Inference runs the CPU BiLSTM over padded runs of similar lengths (the backward
    # direction over each sentence reversed); training and no_grad pack the batch instead.
    network = make_bundle(seed=4).network
    torch.manual_seed(0)
    sizes = torch.tensor(lengths)
    # Padding past every sentence too, as a batch cut from a longer one has.
    features = torch.randn(len(lengths), 11, network.input_dim)
    real = torch.arange(11)[None, :] < sizes[:, None]
    with torch.no_grad():
        assert not network._runs_apply(features)
        packed = network.encode(features, sizes).padded()
    with torch.inference_mode():
        assert network._runs_apply(features)
        runs = network.encode(features, sizes).padded()
    assert torch.allclose(runs[real], packed[real], atol=1e-5)
    assert not runs[~real].any()
