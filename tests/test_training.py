"""Trainer, readers and evaluation on small data written here (never the reference sets)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import torch

from tagserve.cli import main
from tagserve.model.artifact import load
from tagserve.model.predictor import Predictor
from tagserve.training.config import load_config
from tagserve.training.evaluate import evaluate, score
from tagserve.training.readers import DataError, read_conll, read_dataset, read_seq_folder

PEOPLE = ["Alice Smith", "Bob Jones", "Carla Diaz", "Dmitri Ivanov", "Emma Brown"]
PLACES = ["Paris", "New York", "Lagos", "Tokyo", "Lima"]
ORGS = ["Acme Corp", "United Nations", "Globex", "Initech", "Umbrella"]
TEMPLATES = [
    "{p} visited {l} on Monday .",
    "{o} hired {p} in {l} .",
    "In {l} , {p} met reporters .",
    "{p} left {o} last year .",
]


def tagged(phrase: str, label: str) -> list[tuple[str, str]]:
    return [(w, ("B-" if i == 0 else "I-") + label) for i, w in enumerate(phrase.split())]


def make_sentences(count: int = 20) -> list[list[tuple[str, str]]]:
    sentences = []
    for i in range(count):
        template = TEMPLATES[i % len(TEMPLATES)]
        sentence: list[tuple[str, str]] = []
        for piece in template.split():
            if piece == "{p}":
                sentence += tagged(PEOPLE[i % 5], "PER")
            elif piece == "{l}":
                sentence += tagged(PLACES[(i * 2) % 5], "LOC")
            elif piece == "{o}":
                sentence += tagged(ORGS[(i * 3) % 5], "ORG")
            else:
                sentence.append((piece, "O"))
        sentences.append(sentence)
    return sentences


def write_conll(path: Path, sentences: list[list[tuple[str, str]]]) -> Path:
    lines = ["-DOCSTART- -X- -X- O", ""]
    for sentence in sentences:
        lines += [f"{word} NN O {tag}" for word, tag in sentence] + [""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def write_config(path: Path, train: Path, **training: object) -> Path:
    options = {"epochs": 40, "batch_size": 4, "optimizer": "adam", "lr": 0.01, "lr_decay": 0.0,
               "word_dropout": 0.0, "patience": 40, **training}  # fmt: skip
    lines = [
        "[data]", f'train = "{train}"', f'dev = "{train}"', 'format = "conll"',
        "[model]", "pretrained = false", "hidden_size = 32", "char_channels = 16", "dropout = 0.0",
        "[training]", *(f"{k} = {json.dumps(v)}" for k, v in options.items()),
        "[artifact]", 'name = "toy"',
    ]  # fmt: skip
    path.write_text("\n".join(lines) + "\n")
    return path


def test_trainer_overfits_twenty_sentences(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sentences = make_sentences(20)
    train_file = write_conll(tmp_path / "train.txt", sentences)
    config = write_config(tmp_path / "toy.toml", train_file)
    assert main(["train", str(config), "--output", str(tmp_path / "toy"), "--no-progress"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    epochs = [json.loads(line) for line in out if line.startswith('{"epoch"')]
    assert epochs[-1]["loss"] < 0.05 < epochs[0]["loss"]
    summary = json.loads(out[-1])
    assert summary["dev_f1"] == 100.0
    predictor = Predictor(load(tmp_path / "toy"))
    predicted = predictor.predict([[w for w, _ in s] for s in sentences])
    gold = [[t for _, t in s] for s in sentences]
    from tagserve.model.schemes import bioes_to_bio

    assert [bioes_to_bio(p.tags) for p in predicted] == gold
    metadata = json.loads((tmp_path / "toy" / "metadata.json").read_text())
    assert (
        metadata["name"] == "toy"
        and metadata["dev_metrics"]["f1"] == 100.0
        and "trained_at" in metadata
    )


def test_weight_average_is_what_gets_scored_and_saved(tmp_path: Path) -> None:
    """With ``weight_average`` the artifact holds the running average of the weights, not
    the last step's: same seed and data, different saved weights, and it still learns."""
    from safetensors.torch import load_file

    from tagserve.training.config import load_config
    from tagserve.training.trainer import train

    train_file = write_conll(tmp_path / "train.txt", make_sentences(20))
    weights = {}
    for decay in (0.0, 0.9):
        path = write_config(tmp_path / "toy.toml", train_file, epochs=25)
        config = load_config(path, [f"training.weight_average={decay}"])
        result = train(config, tmp_path / f"toy-{decay}", progress=False)
        assert result["dev"]["f1"] == 100.0
        weights[decay] = load_file(tmp_path / f"toy-{decay}" / "weights.safetensors")
    lstm = "rnn.weight_hh_l0"
    assert weights[0.0].keys() == weights[0.9].keys()
    assert not weights[0.0][lstm].allclose(weights[0.9][lstm], atol=1e-4)


def test_conll_reader_skips_docstart_and_reads_last_column(tmp_path: Path) -> None:
    path = write_conll(tmp_path / "d.txt", make_sentences(3))
    examples = read_conll(path)
    assert len(examples) == 3
    assert examples[0].tokens[:2] == ["Alice", "Smith"] and examples[0].tags[:2] == [
        "B-PER",
        "I-PER",
    ]


def test_conll_too_few_columns(tmp_path: Path) -> None:
    path = tmp_path / "bad.txt"
    path.write_text("Alice B-PER\nSmith\n")
    with pytest.raises(
        DataError, match=r"bad\.txt:2: expected at least 2 columns \(token ... tag\), got 1"
    ):
        read_conll(path)


def test_conll_inconsistent_columns(tmp_path: Path) -> None:
    path = tmp_path / "bad.txt"
    path.write_text("Alice NNP B-PER\nSmith I-PER\n")
    with pytest.raises(
        DataError, match=r"bad\.txt:2: expected 3 columns like the lines before, got 2"
    ):
        read_conll(path)


def test_conll_malformed_tag(tmp_path: Path) -> None:
    path = tmp_path / "bad.txt"
    path.write_text("Alice PERSON\n")
    with pytest.raises(DataError, match=r"bad\.txt:1: malformed tag 'PERSON'"):
        read_conll(path)


def test_strict_mode_rejects_forbidden_inside_tag(tmp_path: Path) -> None:
    path = tmp_path / "bad.txt"
    path.write_text("In O\nParis I-LOC\n")
    assert read_conll(path)[0].tags == ["O", "I-LOC"]
    with pytest.raises(
        DataError, match=r"bad\.txt:2: 'I-LOC' may not follow 'O' in BIO \(strict mode\)"
    ):
        read_conll(path, strict=True)


def test_seq_folder_token_tag_count_mismatch(tmp_path: Path) -> None:
    (tmp_path / "seq.in").write_text("fly to boston\nfly from denver\n")
    (tmp_path / "seq.out").write_text("O O B-toloc.city_name\nO O\n")
    with pytest.raises(DataError, match=r"seq\.out:2: has 2 tags but seq\.in line 2 has 3 tokens"):
        read_seq_folder(tmp_path)


def test_seq_folder_reads_and_auto_detects(tmp_path: Path) -> None:
    (tmp_path / "seq.in").write_text("fly to boston\n")
    (tmp_path / "seq.out").write_text("O O B-toloc.city_name\n")
    [example] = read_dataset(tmp_path)
    assert example.tags == ["O", "O", "B-toloc.city_name"]


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope\.txt: file not found"):
        read_dataset(tmp_path / "nope.txt")


def test_config_unknown_key(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[data]\ntrain = "a"\ndev = "b"\n[training]\nepochz = 3\n')
    with pytest.raises(ValueError, match=r"unknown key in \[training\]: epochz"):
        load_config(path)


def test_config_overrides_change_one_value(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[data]\ntrain = "a"\ndev = "b"\n[model]\nrnn = "lstm"\n')
    config = load_config(path, ["model.rnn=gru", "model.bidirectional=false", "training.lr=0.5"])
    assert (config.model.rnn, config.model.bidirectional, config.training.lr) == ("gru", False, 0.5)
    with pytest.raises(ValueError, match=r"expected SECTION\.KEY=VALUE"):
        load_config(path, ["rnn=gru"])
    with pytest.raises(ValueError, match=r"unknown key in \[model\]: rnnn"):
        load_config(path, ["model.rnnn=gru"])


def test_config_yaml(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  train: a\n  dev: b\ntraining:\n  epochs: 3\n")
    assert load_config(path).training.epochs == 3


def test_train_command_reports_data_errors_without_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text("Alice\n")
    config = write_config(tmp_path / "c.toml", bad)
    assert main(["train", str(config), "--output", str(tmp_path / "o"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert (
        err.strip()
        == f"tagserve: error: {bad}:1: expected at least 2 columns (token ... tag), got 1"
    )


def test_score_matches_hand_computed_values() -> None:
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    predicted = [["B-PER", "I-PER", "O", "B-ORG"], ["B-ORG", "O"]]
    metrics = score(gold, predicted)
    # 2 of 3 predicted spans are right, 2 of 3 gold spans are found.
    assert metrics["precision"] == pytest.approx(200 / 3)
    assert metrics["recall"] == pytest.approx(200 / 3)
    assert metrics["per_type"]["LOC"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert metrics["per_type"]["PER"]["f1"] == pytest.approx(100.0)
    assert (metrics["sentences"], metrics["tokens"]) == (2, 6)


def test_evaluate_command_writes_json(tmp_path: Path, tiny_artifact: Path) -> None:
    data = write_conll(tmp_path / "d.txt", make_sentences(4))
    out = tmp_path / "m.json"
    assert main(["evaluate", str(tiny_artifact), "--data", str(data), "--json", str(out)]) == 0
    metrics = json.loads(out.read_text())
    assert set(metrics) == {"precision", "recall", "f1", "per_type", "sentences", "tokens"}
    assert metrics["sentences"] == 4
    expected = evaluate(Predictor(load(tiny_artifact)), read_conll(data))
    assert metrics["f1"] == pytest.approx(expected["f1"])


def _random_crf(num_tags: int = 5, seed: int = 0) -> tuple[object, torch.Tensor, torch.Tensor]:
    """A CRF with random scores, emissions for 3 sentences (lengths 4, 2, 1) and their mask."""
    from tagserve.model.crf import CRF

    torch.manual_seed(seed)
    crf = CRF(num_tags)
    with torch.no_grad():
        for parameter in crf.parameters():
            parameter.normal_()
    emissions = torch.randn(3, 4, num_tags)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]], dtype=torch.bool)
    return crf, emissions, mask


def test_distillation_marginals_are_the_crfs_and_soft_targets_cost_nothing_when_matched() -> None:
    from tagserve.model.crf import CRF
    from tagserve.training.distillation import crf_log_marginals, soft_target_loss

    crf, emissions, mask = _random_crf()
    assert isinstance(crf, CRF)
    expected = crf._log_space_marginals(emissions, mask)
    student = emissions.clone().requires_grad_(True)
    log_marginals = crf_log_marginals(student, *crf.transition_scores, mask)
    assert torch.allclose(log_marginals.exp()[mask], expected[mask], atol=1e-5)
    assert torch.allclose(log_marginals.exp()[mask].sum(-1), torch.ones(int(mask.sum())))
    # Student == teacher: KL 0, and a stationary point (zero gradient).
    loss = soft_target_loss(log_marginals.exp().detach(), log_marginals, mask)
    loss.backward()
    assert abs(loss.item()) < 1e-5
    assert student.grad is not None and student.grad.abs().max().item() < 1e-5
    # Padding never counts: garbage targets there change nothing.
    target = log_marginals.exp().detach().masked_fill(~mask.unsqueeze(2), 0.3)
    assert abs(soft_target_loss(target, log_marginals, mask).item()) < 1e-5


def test_training_on_soft_targets_decreases_the_loss() -> None:
    from tagserve.model.crf import CRF
    from tagserve.training.distillation import crf_log_marginals, soft_target_loss

    crf, emissions, mask = _random_crf(seed=1)
    assert isinstance(crf, CRF)
    teacher, _, _ = _random_crf(seed=2)
    assert isinstance(teacher, CRF)
    with torch.no_grad():
        target = crf_log_marginals(emissions * 2, *teacher.transition_scores, mask).exp()
    student = emissions.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([student, *crf.parameters()], lr=0.1)
    losses = []
    for _ in range(60):
        loss = soft_target_loss(
            target, crf_log_marginals(student, *crf.transition_scores, mask), mask
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[0] > 0.5 and losses[-1] < 0.05 * losses[0]
    assert all(b <= a + 1e-4 for a, b in itertools.pairwise(losses[:11]))


def test_a_higher_temperature_softens_the_teacher() -> None:
    from tagserve.model.artifact import build_network
    from tagserve.model.vocab import LabelSet
    from tagserve.training.distillation import log_marginals

    crf, emissions, mask = _random_crf()
    labels = LabelSet(["O", "B-X", "I-X", "E-X", "S-X"], "BIOES")
    from tagserve.model.config import TaggerConfig

    network = build_network(TaggerConfig(num_words=3, num_chars=3, num_tags=5), labels)
    network.crf = crf  # type: ignore[assignment]

    def entropy(temperature: float) -> float:
        p = log_marginals(network, emissions, mask, temperature).detach().exp()[mask]
        return float(-(torch.xlogy(p, p)).sum())

    assert entropy(0.5) < entropy(1.0) < entropy(2.0) < entropy(100.0)


def test_a_teacher_is_matched_by_label_name_and_one_without_the_students_labels_refused() -> None:
    from tagserve.model.vocab import LabelSet
    from tagserve.training.distillation import label_map

    student = LabelSet(["O", "B-PER", "I-PER", "B-LOC", "I-LOC"], "BIO")
    teacher = LabelSet(["O", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-PER", "I-PER"], "BIO")
    assert label_map(teacher, student) == [0, 5, 6, 1, 2]
    bioes = LabelSet(["O", "B-PER", "I-PER", "E-PER", "S-PER"], "BIOES")
    with pytest.raises(ValueError) as raised:
        label_map(bioes, student, "models/x")
    message = str(raised.value)
    assert message == (
        "teacher models/x cannot teach this model: its labels (BIOES, 5) lack 2 of the "
        "student's: B-LOC, I-LOC"
    )


def _with_teacher(path: Path, teacher: Path | str, **settings: object) -> Path:
    body = "".join(f"{k} = {json.dumps(v)}\n" for k, v in settings.items())
    path.write_text(
        path.read_text() + f"[training.distillation]\nteacher = {json.dumps(str(teacher))}\n{body}"
    )
    return path


def test_training_with_a_teacher_writes_an_artifact_that_names_it(
    tmp_path: Path, tiny_artifact: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The tiny teacher knows LOC, MISC, ORG and PER (17 BIOES tags, its own vocabulary); the
    student's data has PER, LOC and ORG with some sentences re-cased each epoch."""
    train_file = write_conll(tmp_path / "train.txt", make_sentences(20))
    config = _with_teacher(
        write_config(tmp_path / "kd.toml", train_file, epochs=3), tiny_artifact,
        weight=0.5, temperature=2.0,
    )  # fmt: skip
    config.write_text(config.read_text() + "[training.case_augmentation]\nlower = 0.5\n")
    assert main(["train", str(config), "--output", str(tmp_path / "kd"), "--no-progress"]) == 0
    epochs = [
        json.loads(line) for line in capsys.readouterr().out.splitlines() if '"epoch"' in line
    ]
    assert len(epochs) == 3 and all(e["loss"] > 0 for e in epochs)
    metadata = json.loads((tmp_path / "kd" / "metadata.json").read_text())
    teacher = metadata["training"]["teacher"]
    assert (teacher["path"], teacher["name"], teacher["version"]) == (
        str(tiny_artifact),
        "tiny",
        "0.0.1",
    )
    assert (teacher["weight"], teacher["temperature"]) == (0.5, 2.0)
    recorded = metadata["training"]["config"]["training"]["distillation"]
    assert recorded == {"teacher": str(tiny_artifact), "weight": 0.5, "temperature": 2.0}
    assert Predictor(load(tmp_path / "kd")).predict([["Alice", "Smith"]])[0].tags


def test_a_teacher_with_other_labels_is_one_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tagserve.model.artifact import save
    from tests.conftest import make_bundle

    save(make_bundle(scheme="BIO"), tmp_path / "bio-teacher")
    train_file = write_conll(tmp_path / "train.txt", make_sentences(8))
    config = _with_teacher(write_config(tmp_path / "kd.toml", train_file), tmp_path / "bio-teacher")
    assert main(["train", str(config), "--output", str(tmp_path / "kd"), "--no-progress"]) == 2
    error = capsys.readouterr().err.strip()
    assert error == (
        f"tagserve: error: teacher {tmp_path / 'bio-teacher'} cannot teach this model: "
        "its labels (BIO, 9) lack 6 of the student's: E-LOC, S-LOC, E-ORG, S-ORG, E-PER, S-PER"
    )
    assert "\n" not in error and not (tmp_path / "kd").exists()
    _with_teacher(write_config(tmp_path / "kd.toml", train_file), tmp_path / "nowhere")
    assert main(["train", str(config), "--output", str(tmp_path / "kd"), "--no-progress"]) == 2
    assert "training.distillation.teacher: model artifact" in capsys.readouterr().err
