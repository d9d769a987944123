"""``--init``: start from a trained artifact's weights, vocabularies and architecture, with
the output layer fitted to the new data's labels."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tagserve.cli import main
from tagserve.model.artifact import load, save
from tagserve.model.predictor import Predictor
from tagserve.training.config import TrainConfig
from tagserve.training.readers import Example
from tagserve.training.trainer import build_state
from tests.conftest import make_bundle

torch.set_num_threads(1)
# The data keeps PER, adds PRODUCT and lacks the init model's LOC, MISC and ORG.
DATA = [
    Example(
        ["harry", "potter", "bought", "a", "Nimbus2000"], ["B-PER", "I-PER", "O", "O", "B-PRODUCT"]
    ),
    Example(["the", "Nimbus2000", "of", "hermione"], ["O", "B-PRODUCT", "O", "B-PER"]),
]


@pytest.fixture
def init_dir(tmp_path: Path) -> Path:
    """A small random-weight artifact (labels LOC, MISC, ORG, PER in BIOES)."""
    directory = tmp_path / "init"
    save(make_bundle(seed=3), directory)
    return directory


def config_for(init: Path, **model: object) -> TrainConfig:
    return TrainConfig.model_validate(
        {
            "data": {"train": "t", "dev": "d"},
            "model": {
                "init": str(init), "pretrained": False, "hidden_size": 16, "char_channels": 8,
                "char_dim": 8, **model,
            },
        }
    )  # fmt: skip


def test_weights_the_init_model_shares_are_carried_over(init_dir: Path) -> None:
    init = load(init_dir)
    old = {k: v.float() for k, v in init.network.state_dict().items()}
    state = build_state(config_for(init_dir), DATA, "cpu")
    new = state.network.state_dict()

    # Encoder, casing and character CNN: the init model's, unchanged.
    for name in ("rnn.weight_ih_l0", "rnn.weight_hh_l0_reverse", "casing_embedding.weight",
                 "char_encoder.conv.weight"):  # fmt: skip
        assert torch.equal(new[name], old[name]), name
    # Characters: the init table first, then fresh rows for characters it lacks (digits).
    assert state.chars.tokens[: len(init.chars)] == init.chars.tokens
    count = len(init.chars)
    assert torch.equal(
        new["char_encoder.embedding.weight"][:count], old["char_encoder.embedding.weight"]
    )
    assert state.chars.tokens[count:] == ["0", "2"]
    assert new["char_encoder.embedding.weight"].shape[0] == count + 2
    # Words: shared words keep their rows; new words get rows of their own.
    for word in ("harry", "potter", "the"):
        row = state.words.index(word)
        assert row < state.network.config.num_words  # updated by training
        assert torch.equal(
            new["word_embedding.weight"][row], old["word_embedding.weight"][init.words.index(word)]
        )
    assert state.words.index("nimbus2000") > 1 and "nimbus2000" not in init.words
    # Words of the init model the data lacks are kept, frozen, with their rows.
    frozen_at = state.words.index("granger") - state.network.config.num_words
    assert frozen_at >= 0
    assert torch.equal(
        state.frozen_rows[frozen_at], old["word_embedding.weight"][init.words.index("granger")]
    )

    # Labels: the data's own (PER and PRODUCT), in the init model's rows where it had them.
    labels = state.labels.labels
    assert state.labels.entity_types == ["PER", "PRODUCT"]
    assert not any("LOC" in tag or "MISC" in tag for tag in labels)
    for tag in ("O", "B-PER", "E-PER", "S-PER"):
        i, j = labels.index(tag), init.labels.labels.index(tag)
        assert torch.equal(new["emission.weight"][i], old["emission.weight"][j])
        assert new["emission.bias"][i] == old["emission.bias"][j]
        assert new["crf.start_transitions"][i] == old["crf.start_transitions"][j]
    b, e = labels.index("B-PER"), labels.index("E-PER")
    old_b, old_e = init.labels.labels.index("B-PER"), init.labels.labels.index("E-PER")
    assert new["crf.transitions"][b, e] == old["crf.transitions"][old_b, old_e]
    assert new["emission.weight"].shape[0] == len(labels) == 9  # O + 4 tags x 2 types


def test_an_intent_head_is_added_fresh_when_only_the_data_has_intents(init_dir: Path) -> None:
    data = [
        Example(e.tokens, e.tags, intent) for e, intent in zip(DATA, ["buy", "own"], strict=True)
    ]
    state = build_state(config_for(init_dir, intents=True), data, "cpu")
    assert state.intents == ["buy", "own"]
    assert state.network.intent_output is not None
    assert state.network.intent_output.out_features == 2


def test_train_from_an_init_model_records_it_on_the_card(
    tmp_path: Path, init_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train = tmp_path / "train.txt"
    train.write_text(
        "\n\n".join(
            "\n".join(f"{w} {t}" for w, t in zip(e.tokens, e.tags, strict=True)) for e in DATA * 5
        )
        + "\n"
    )
    out = tmp_path / "out"
    common = ["--dev", str(train), "--output", str(out), "--init", str(init_dir), "--no-progress"]
    sets = ["--set", "training.epochs=2", "--vectors", "none"]
    # The architecture is the init model's: a conflicting --set is refused, naming the key.
    assert (
        main(["train", "--train", str(train), *common, *sets, "--set", "model.hidden_size=32"]) == 2
    )
    error = capsys.readouterr().err
    assert "--set model.hidden_size=32 conflicts with the init model" in error
    assert "hidden_size = 16" in error
    # The recipe's architecture (hidden 128, ...) gives way to the init model's.
    assert main(["train", "--train", str(train), *common, *sets]) == 0
    card = json.loads((out / "metadata.json").read_text())
    assert card["training"]["init"] == {"source": str(init_dir), "name": "tiny", "version": "0.0.1"}
    trained = load(out)
    assert trained.config.hidden_size == 16 and trained.labels.entity_types == ["PER", "PRODUCT"]
    tags = Predictor(trained).predict([["harry", "potter", "bought", "a", "Nimbus2000"]])[0].tags
    assert len(tags) == 5
    # A config file with other architecture values works with --init too (its values give way).
    config = tmp_path / "c.toml"
    config.write_text(
        f'[data]\ntrain = "{train}"\ndev = "{train}"\n[model]\nhidden_size = 128\n'
        "pretrained = false\n[training]\nepochs = 1\n"
    )
    again = tmp_path / "again"
    assert (
        main(
            ["train", str(config), "--output", str(again), "--init", str(init_dir), "--no-progress"]
        )
        == 0
    )
    assert load(again).config.hidden_size == 16


def test_init_from_the_shipped_ner_model(tmp_path: Path) -> None:
    ner = load(Path(__file__).resolve().parent.parent / "model" / "artifacts" / "ner")
    config = TrainConfig.model_validate(
        {"data": {"train": "t", "dev": "d"}, "model": {"init": "ner", "pretrained": False,
         **ner.config.architecture()}}
    )  # fmt: skip
    data = [Example(["Paris", "is", "in", "France"], ["B-LOC", "O", "O", "B-LOC"])]
    state = build_state(config, data, "cpu")
    new = state.network.state_dict()
    paris = ner.network.word_embedding.weight[ner.words.index("paris")]
    assert torch.equal(new["word_embedding.weight"][state.words.index("paris")], paris)
    assert torch.equal(new["rnn.weight_hh_l0"], ner.network.state_dict()["rnn.weight_hh_l0"])
    assert len(state.words) == len(ner.words)  # every word of the data is known to ner
    assert state.labels.labels == ["O", "B-LOC", "I-LOC", "E-LOC", "S-LOC"]


def test_an_intent_head_is_carried_over_by_intent_name() -> None:
    slots = load(Path(__file__).resolve().parent.parent / "model" / "artifacts" / "slots")
    config = TrainConfig.model_validate(
        {"data": {"train": "t", "dev": "d"}, "model": {"init": "slots", "pretrained": False,
         "scheme": "BIO", "intents": True, **slots.config.architecture()}}
    )  # fmt: skip
    tags = ["O", "O", "O", "B-fromloc.city_name", "O", "B-seat"]
    data = [
        Example(["show", "flights", "from", "boston", "by", "window"], tags, "atis_flight"),
        Example(["book", "a", "seat", "boston", "by", "window"], tags, "book_seat"),
    ]
    state = build_state(config, data, "cpu")
    assert state.intents == ["atis_flight", "book_seat"]
    new, old = state.network.state_dict(), slots.network.state_dict()
    flight = slots.intents.index("atis_flight")
    assert torch.equal(new["intent_output.weight"][0], old["intent_output.weight"][flight])
    assert torch.equal(new["intent_attention.weight"], old["intent_attention.weight"])
    assert not torch.equal(new["intent_output.weight"][1], old["intent_output.weight"][1])
