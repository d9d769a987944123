"""``tagserve train`` without a config file: the default recipe for the data, flags and
``--set`` over it, a dev split, and the resolved config that repeats the run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from tagserve.cli import main
from tagserve.training.config import load_config
from tagserve.training.recipe import batch_size_for
from tests.test_training import make_sentences, write_conll

torch.set_num_threads(1)
# Small and quick: no GloVe, a tiny network, two epochs.
TINY = [
    "--vectors",
    "none",
    "--no-progress",
    "--set",
    "training.epochs=2",
    "--set",
    "model.hidden_size=16",
    "--set",
    "model.char_channels=8",
]


def train_file(tmp_path: Path, sentences: int = 30) -> Path:
    return write_conll(tmp_path / "train.txt", make_sentences(sentences))


def test_train_without_a_config_writes_a_config_that_repeats_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    train = train_file(tmp_path)
    monkeypatch.chdir(tmp_path)  # relative paths on the command line are read from here
    out = tmp_path / "first"
    command = ["train", "--train", "train.txt", "--dev", "train.txt", "--output", "first"]
    assert main([*command, *TINY, "--set", "training.case_augmentation.lower=0"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["config"] == str(Path("first") / "train-config.yaml")

    written = yaml.safe_load((out / "train-config.yaml").read_text())
    # Paths absolute, so the config works from anywhere.
    assert written["data"]["train"] == written["data"]["dev"] == str(train)
    # The default recipe for 30 sentences, with --set on top, one nesting level down too.
    assert written["training"]["batch_size"] == batch_size_for(30) == 8
    assert written["training"]["optimizer"] == "nadam"
    assert written["training"]["case_augmentation"] == {"lower": 0.0, "upper": 0.15}
    assert (written["training"]["epochs"], written["model"]["hidden_size"]) == (2, 16)
    assert written["model"]["pretrained"] is False
    card = json.loads((out / "metadata.json").read_text())
    # Every field: reading the written config back gives the config the card records.
    reread = load_config(out / "train-config.yaml").model_dump(mode="json")
    assert reread == card["training"]["config"]

    # The written config alone repeats the run: the same weights, bit for bit.
    monkeypatch.chdir(tmp_path.parent)
    again = tmp_path / "again"
    assert main(["train", str(out / "train-config.yaml"), "--output", str(again)]) == 0
    first, second = load_file(out / "weights.safetensors"), load_file(again / "weights.safetensors")
    assert first.keys() == second.keys()
    assert all(torch.equal(first[name], second[name]) for name in first)
    assert load_config(again / "train-config.yaml") == load_config(out / "train-config.yaml")


def test_dev_split_is_seeded_reported_and_recorded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train = train_file(tmp_path, 30)
    dev_sets = []
    for run, seed in (("a", 1), ("b", 1), ("c", 2)):
        out = tmp_path / run
        command = ["train", "--train", str(train), "--dev-split", "0.2", "--output", str(out)]
        assert main([*command, *TINY, "--set", f"training.seed={seed}"]) == 0
        assert "dev split: 6 of 30 training sentences held out as dev" in capsys.readouterr().err
        written = yaml.safe_load((out / "train-config.yaml").read_text())
        assert written["data"]["dev_split"] == 0.2 and "dev" not in written["data"]
        card = json.loads((out / "metadata.json").read_text())
        assert card["dev_metrics"]["sentences"] == 6
        dev_sets.append(card["dev_metrics"]["tokens"])
    # The recipe was made for the 24 sentences left for training.
    assert written["training"]["batch_size"] == batch_size_for(24)
    # The seed decides the split: same seed, same dev sentences.
    assert dev_sets[0] == dev_sets[1]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--dev", "D", "--dev-split", "0.1"], "give --dev or --dev-split, not both"),
        ([], "--train needs --dev FILE or --dev-split SHARE"),
        (["--dev-split", "0.01"], "leaves 0 for dev and 30 for training: each needs at least 1"),
        (["--dev", "missing.txt"], "missing.txt: file not found"),
        (
            ["--dev", "D", "--set", "training.epochs=none"],
            "command line: [training] epochs: Input should be a valid integer",
        ),
        (
            ["--dev", "D", "--set", "training.case_augmentation.lowr=0"],
            "unknown key in [training.case_augmentation]: lowr",
        ),
        (["--dev", "D", "--vectors", "nope.vec"], "nope.vec: file not found"),
    ],
)
def test_bad_training_flags_are_one_error_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    arguments: list[str],
    message: str,
) -> None:
    train = train_file(tmp_path)
    monkeypatch.chdir(tmp_path)
    arguments = [str(train) if a == "D" else a for a in arguments]
    code = main(["train", "--train", str(train), "--output", "out", *arguments])
    error = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert error[-1].startswith("tagserve: error: ") and message in error[-1]
    assert not (tmp_path / "out" / "config.json").exists()


def test_neither_config_nor_train_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--output", "out"]) == 2
    assert "give a config file or --train FILE" in capsys.readouterr().err


def test_unknown_format_and_bad_share_stop_before_anything_runs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    for arguments in (["--format", "xml"], ["--dev-split", "1.5"]):
        with pytest.raises(SystemExit) as raised:
            main(["train", "--train", "t.txt", "--output", "out", *arguments])
        assert raised.value.code == 2
    assert "expected a share between 0 and 1, got '1.5'" in capsys.readouterr().err


def test_flags_replace_a_config_files_data(tmp_path: Path) -> None:
    """With a config file, --train and friends replace its [data] values (the recipe is the
    file's), and --name/--version its [artifact] ones."""
    from tagserve.training.resolve import TrainFlags, resolve_config

    config = tmp_path / "c.toml"
    config.write_text(
        '[data]\ntrain = "a.txt"\ndev = "b.txt"\nformat = "conll"\n'
        "[training]\nepochs = 7\n[artifact]\nname = 'old'\n"
    )
    flags = TrainFlags(train=Path("new.txt"), dev_split=0.1, name="new", lowercase=True)
    resolved = resolve_config(config, flags, ["training.lr=0.1"], tmp_path / "data").config
    assert resolved.data.train == str(Path("new.txt").absolute())
    assert (resolved.data.dev, resolved.data.dev_split, resolved.data.format) == (
        None,
        0.1,
        "conll",
    )
    assert (resolved.training.epochs, resolved.training.lr) == (7, 0.1)
    assert (resolved.artifact.name, resolved.artifact.lowercase) == ("new", True)
    # Without flags, relative config paths resolve against the data directory, made absolute.
    plain = resolve_config(config, TrainFlags(), [], tmp_path / "data").config
    assert plain.data.dev == str((tmp_path / "data" / "b.txt").absolute())


def test_set_reaches_nested_tables(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[data]\ntrain = "a"\ndev = "b"\n')
    config = load_config(
        path, ["training.case_augmentation.lower=0.2", "training.distillation.weight=2"]
    )
    assert config.training.case_augmentation.lower == 0.2
    assert config.training.distillation.weight == 2
    with pytest.raises(ValueError, match=r"\[training\.epochs\] must be a table"):
        load_config(path, ["training.epochs=3", "training.epochs.x=1"])


def test_evaluate_scores_an_export_by_exact_character_spans(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = "🙂 Angela Merkel visited Paris ."
    merkel, paris = text.index("Angela Merkel"), text.index("Paris")

    def utf16(offset: int) -> int:
        return len(text[:offset].encode("utf-16-le")) // 2

    # Gold says Paris is an ORG: one entity right (PER), one wrong: P = R = F1 = 50.
    spans = [(merkel, merkel + 13, "PER"), (paris, paris + 5, "ORG")]
    record = {"text": text, "label": [[utf16(s), utf16(e), label] for s, e, label in spans]}
    export = tmp_path / "gold.jsonl"
    export.write_text(json.dumps(record, ensure_ascii=False) + "\n", encoding="utf-8")
    out = tmp_path / "m.json"
    command = ["evaluate", "ner", "--data", str(export), "--json", str(out)]
    assert main([*command, "--offsets", "utf16"]) == 0
    metrics = json.loads(out.read_text())
    assert (metrics["precision"], metrics["recall"], metrics["f1"]) == (50.0, 50.0, 50.0)
    assert metrics["per_type"]["PER"]["f1"] == 100.0 and metrics["per_type"]["ORG"]["f1"] == 0
    assert "intent_accuracy" not in metrics
    printed = capsys.readouterr()
    assert "doccano" in printed.err and "micro" in printed.out
    # Read as code points, the emoji (two UTF-16 units) shifts every span by one: no match.
    assert main(command) == 0
    assert json.loads(out.read_text())["f1"] == 0.0


def test_evaluate_reports_intent_accuracy_for_an_export_with_intents(tmp_path: Path) -> None:
    text = "show me flights from boston to denver"
    spans = [
        [text.index("boston"), text.index("boston") + 6, "fromloc.city_name"],
        [text.index("denver"), text.index("denver") + 6, "toloc.city_name"],
    ]
    export = tmp_path / "gold.jsonl"
    export.write_text(json.dumps({"text": text, "label": spans, "cats": ["atis_flight"]}) + "\n")
    out = tmp_path / "m.json"
    assert main(["evaluate", "slots", "--data", str(export), "--json", str(out)]) == 0
    metrics = json.loads(out.read_text())
    assert metrics["f1"] == 100.0 and metrics["intent_accuracy"] == 100.0
