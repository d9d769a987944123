"""The training config is validated before any data is read: one line naming file and key."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from tagserve.cli import main
from tagserve.training.config import CaseAugmentation, load_config
from tagserve.training.trainer import recase

BASE = '[data]\ntrain = "missing/train.txt"\ndev = "missing/dev.txt"\n'


@pytest.mark.parametrize(
    ("body", "overrides", "message"),
    [
        (
            '[training]\nepochs = "five"\n',
            [],
            r"\[training\] epochs: Input should be a valid integer",
        ),
        ("", ["training.epochs=abc"], r"\[training\] epochs: Input should be a valid integer"),
        ('[training]\noptimizer = "adamw"\n', [], r"\[training\] optimizer: Input should be 'sgd'"),
        ('[artifact]\ntokenizer = "spacy"\n', [], r"\[artifact\] tokenizer: Input should be"),
        ("[training]\nbatch_size = 0\n", [], r"\[training\] batch_size: Input should be greater"),
        ("[training\nepochs = 3\n", [], r"TOML syntax error"),
        ("", ["training.weight_average=1"], r"\[training\] weight_average: Input should be less"),
        ("[model]\nhidden = 3\n", [], r"unknown key in \[model\]: hidden"),
        (
            "[training.case_augmentation]\nlower = 0.8\nupper = 0.4\n",
            [],
            r"\[training\] case_augmentation: Value error, lower \+ upper must be at most 1",
        ),
        (
            '[training.distillation]\nteacher = "ner"\ntemperature = 0\n',
            [],
            r"\[training\] distillation.temperature: Input should be greater than 0 \(got 0\)",
        ),
        (
            "[training.distillation]\nweight = -0.5\n",
            [],
            r"\[training\] distillation.weight: Input should be greater than or equal to 0",
        ),
        (
            '[training.distillation]\nteacher = ""\n',
            [],
            r"\[training\] distillation.teacher: String should have at least 1 character",
        ),
        (
            '[training.distillation]\nteachr = "ner"\n',
            [],
            r"unknown key in \[training\.distillation\]: teachr",
        ),
    ],
)
def test_a_bad_config_is_one_line_naming_file_and_key(
    tmp_path: Path, body: str, overrides: list[str], message: str
) -> None:
    path = tmp_path / "c.toml"
    path.write_text(BASE + body)
    with pytest.raises(ValueError, match=message) as raised:
        load_config(path, overrides)
    assert str(raised.value).startswith(f"{path}: ") and "\n" not in str(raised.value)


def test_the_train_command_fails_before_reading_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.toml"
    path.write_text(BASE + '[training]\noptimizer = "adamw"\n')
    assert main(["train", str(path), "--output", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"tagserve: error: {path}: [training] optimizer:")
    assert "missing/train.txt" not in error


def test_output_refuses_an_existing_artifact_without_force(
    tmp_path: Path, tiny_artifact: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.toml"
    path.write_text(BASE)
    assert main(["train", str(path), "--output", str(tiny_artifact)]) == 2
    assert "already holds a model artifact; pass --force" in capsys.readouterr().err
    # With --force it goes on (and fails later, on the missing data).
    assert main(["train", str(path), "--output", str(tiny_artifact), "--force"]) == 2
    assert "missing/train.txt: file not found" in capsys.readouterr().err


def test_recase_draws_each_casing_at_its_share() -> None:
    rng = random.Random(0)
    augmentation = CaseAugmentation(lower=0.3, upper=0.2)
    seen = [recase(["Angela", "Merkel"], augmentation, rng) for _ in range(5000)]
    lower = sum(s == ["angela", "merkel"] for s in seen) / 5000
    upper = sum(s == ["ANGELA", "MERKEL"] for s in seen) / 5000
    assert abs(lower - 0.3) < 0.03 and abs(upper - 0.2) < 0.03
    assert recase(["Angela"], CaseAugmentation(), rng) == ["Angela"]
