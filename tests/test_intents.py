"""Joint slot filling and intent: the reader's label file, joint training, save/load, and
the service's ``intent`` (only for models with the head)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient

from tagserve.cli import main
from tagserve.model.artifact import ModelBundle, build_network, load, save
from tagserve.model.predictor import Predictor, TaggedSentence
from tagserve.text.pipeline import text_intent
from tagserve.training.evaluate import evaluate
from tagserve.training.readers import DataError, read_seq_folder
from tests.conftest import make_bundle
from tests.service_helpers import tiny_app

# Twenty hand-written queries, a slot marked as word/slot, and each one's intent.
MARKED = [
    ("show flights from boston/from to denver/to", "flight"),
    ("list flights from dallas/from to atlanta/to", "flight"),
    ("flights from miami/from to boston/to please", "flight"),
    ("i want a flight from denver/from to dallas/to", "flight"),
    ("show me flights to atlanta/to", "flight"),
    ("what is the fare from boston/from to miami/to", "airfare"),
    ("how much is a ticket to denver/to", "airfare"),
    ("cheapest fare from atlanta/from to dallas/to", "airfare"),
    ("what does a ticket to miami/to cost", "airfare"),
    ("fares from dallas/from to boston/to", "airfare"),
    ("ground transportation in boston/city", "ground_service"),
    ("is there a taxi in denver/city", "ground_service"),
    ("rental cars in dallas/city", "ground_service"),
    ("limousine service in miami/city", "ground_service"),
    ("how do i get downtown in atlanta/city", "ground_service"),
    ("which airlines fly to boston/to", "airline"),
    ("what airline goes from denver/from to miami/to", "airline"),
    ("airlines flying from atlanta/from", "airline"),
    ("name the carriers to dallas/to", "airline"),
    ("flights and fares from boston/from to denver/to", "flight#airfare"),
]


def unmark(marked: str) -> tuple[str, str]:
    """``"to denver/to"`` → (``"to denver"``, ``"O B-to"``)."""
    words, tags = [], []
    for piece in marked.split():
        word, _, slot = piece.partition("/")
        words.append(word)
        tags.append(f"B-{slot}" if slot else "O")
    return " ".join(words), " ".join(tags)


QUERIES = [(*unmark(marked), intent) for marked, intent in MARKED]


def write_folder(path: Path, queries: list[tuple[str, str, str]], labels: bool = True) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "seq.in").write_text("".join(f"{q[0]}\n" for q in queries))
    (path / "seq.out").write_text("".join(f"{q[1]}\n" for q in queries))
    if labels:
        (path / "label").write_text("".join(f"{q[2]}\n" for q in queries))
    return path


def test_the_reader_reads_intents_and_keeps_multi_intent_labels_whole(tmp_path: Path) -> None:
    examples = read_seq_folder(write_folder(tmp_path / "d", QUERIES))
    assert [e.intent for e in examples] == [q[2] for q in QUERIES]
    assert examples[-1].intent == "flight#airfare"
    without = read_seq_folder(write_folder(tmp_path / "plain", QUERIES, labels=False))
    assert all(e.intent is None for e in without)


def test_a_label_count_mismatch_is_one_line_naming_file_and_line(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "d", QUERIES)
    (folder / "label").write_text("".join(f"{q[2]}\n" for q in QUERIES[:17]))
    with pytest.raises(DataError) as raised:
        read_seq_folder(folder)
    message = str(raised.value)
    assert (
        message == f"{folder / 'label'}:18: has 17 lines but seq.in has 20: one intent per sentence"
    )


def _joint_config(path: Path, train: Path, dev: Path) -> Path:
    lines = [
        "[data]", f'train = "{train}"', f'dev = "{dev}"', 'format = "bio"',
        "[model]", 'scheme = "BIO"', "pretrained = false", "hidden_size = 32",
        "char_channels = 16", "dropout = 0.0", "intents = true",
        "[training]", "epochs = 60", "batch_size = 4", 'optimizer = "adam"', "lr = 0.01",
        "lr_decay = 0.0", "word_dropout = 0.0", "patience = 60", 'select_by = "frame_accuracy"',
        "[artifact]", 'name = "joint"', 'tokenizer = "atis"',
    ]  # fmt: skip
    path.write_text("\n".join(lines) + "\n")
    return path


def test_joint_training_overfits_twenty_sentences(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Dev holds an intent that training never saw: it counts as an error, never a crash.
    unseen = [("book a hotel in boston", "O O O O B-city", "hotel")]
    train = write_folder(tmp_path / "train", QUERIES)
    dev = write_folder(tmp_path / "dev", QUERIES + unseen)
    config = _joint_config(tmp_path / "joint.toml", train, dev)
    assert main(["train", str(config), "--output", str(tmp_path / "m"), "--no-progress"]) == 0
    capsys.readouterr()
    bundle = load(tmp_path / "m")
    assert bundle.intents == sorted({q[2] for q in QUERIES})
    predicted = Predictor(bundle).predict([q[0].split() for q in QUERIES])
    assert [p.tags for p in predicted] == [q[1].split() for q in QUERIES]
    assert [p.intents[0][0] for p in predicted if p.intents] == [q[2] for q in QUERIES]
    metrics = evaluate(Predictor(bundle), read_seq_folder(dev))
    assert metrics["intent_accuracy"] == pytest.approx(100 * 20 / 21)
    assert metrics["frame_accuracy"] == pytest.approx(100 * 20 / 21)
    assert metrics["per_intent"]["hotel"] == {"support": 1, "correct": 0, "accuracy": 0.0}
    json_path = tmp_path / "metrics.json"
    assert (
        main(["evaluate", str(tmp_path / "m"), "--data", str(dev), "--json", str(json_path)]) == 0
    )
    written = json.loads(json_path.read_text())
    assert {"f1", "intent_accuracy", "frame_accuracy", "per_intent"} <= set(written)


def test_intents_without_labels_in_the_data_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train = write_folder(tmp_path / "train", QUERIES, labels=False)
    config = _joint_config(tmp_path / "joint.toml", train, train)
    assert main(["train", str(config), "--output", str(tmp_path / "m"), "--no-progress"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("tagserve: error: model.intents is true but 20 of 20 training")


def joint_bundle() -> ModelBundle:
    """The tiny random model with an intent head of three intents."""
    plain = make_bundle(scheme="BIO")
    config = plain.config.model_copy(update={"num_intents": 3})
    torch.manual_seed(0)
    network = build_network(config, plain.labels).eval()
    intents = ["flight", "airfare", "ground_service"]
    return ModelBundle(network, plain.words, plain.chars, plain.labels, plain.card, intents)


def test_save_then_load_gives_identical_intents(tmp_path: Path) -> None:
    bundle = joint_bundle()
    with torch.no_grad():
        bundle.network.word_embedding.weight.copy_(
            bundle.network.word_embedding.weight.half().float()
        )
    save(bundle, tmp_path / "j")
    loaded = load(tmp_path / "j")
    assert loaded.intents == bundle.intents
    sentences = [["harry", "potter"], ["the"], ["and", "hermione", "granger"]]
    before = Predictor(bundle).predict(sentences)
    after = Predictor(loaded).predict(sentences)
    for b, a in zip(before, after, strict=True):
        assert b.intents is not None and a.intents is not None
        assert [name for name, _ in b.intents] == [name for name, _ in a.intents]
        assert [p for _, p in b.intents] == pytest.approx([p for _, p in a.intents], abs=1e-6)


def test_an_artifact_without_the_head_has_no_intents(tmp_path: Path) -> None:
    save(make_bundle(), tmp_path / "plain")
    assert "intents" not in json.loads((tmp_path / "plain" / "labels.json").read_text())
    [result] = Predictor(load(tmp_path / "plain")).predict([["harry", "potter"]])
    assert result.intents is None


def test_a_text_gets_one_intent_weighted_by_its_sentences_tokens() -> None:
    long = TaggedSentence(["O"] * 3, [1.0] * 3, [("flight", 0.9), ("airfare", 0.1)])
    short = TaggedSentence(["O"], [1.0], [("airfare", 0.7), ("flight", 0.3)])
    intent = text_intent([long, short], top_k=2)
    assert intent == {
        "label": "flight",
        "score": round(0.75 * 0.9 + 0.25 * 0.3, 4),
        "alternatives": [
            {"label": "flight", "score": 0.75},
            {"label": "airfare", "score": 0.25},
        ],
    }
    assert text_intent([], top_k=None) is None


def test_the_service_returns_an_intent_only_for_models_with_the_head(tmp_path: Path) -> None:
    save(joint_bundle(), tmp_path / "models" / "joint")
    save(make_bundle(), tmp_path / "models" / "tiny")
    with TestClient(tiny_app(tmp_path / "models")) as client:
        body = client.post(
            "/tag", json={"text": "harry potter. and the granger", "model": "joint"}
        ).json()
        [result] = body["results"]
        intent = result["intent"]
        assert intent["label"] in {"flight", "airfare", "ground_service"}
        assert 0 <= intent["score"] <= 1 and "alternatives" not in intent
        top = client.post(
            "/tag", json={"texts": ["harry potter", ""], "model": "joint", "intent_top_k": 3}
        ).json()["results"]
        scores = [choice["score"] for choice in top[0]["intent"]["alternatives"]]
        assert len(scores) == 3 and scores == sorted(scores, reverse=True)
        assert top[0]["intent"]["score"] == scores[0]
        assert top[1]["intent"] is None
        for k in (0, 4):
            refused = client.post("/tag", json={"text": "x", "model": "joint", "intent_top_k": k})
            assert refused.status_code == 422 and "intent_top_k" in refused.json()["detail"]
        plain = client.post("/tag", json={"text": "harry potter"}).json()
        assert "intent" not in plain["results"][0]
        no_head = client.post("/tag", json={"text": "x", "intent_top_k": 1})
        assert no_head.status_code == 422
        assert no_head.json()["detail"] == "intent_top_k: model 'tiny' has no intent head"
        models = {m["name"]: m for m in client.get("/models").json()["models"]}
        assert models["joint"]["intents"] == ["flight", "airfare", "ground_service"]
        assert models["tiny"]["intents"] == []
