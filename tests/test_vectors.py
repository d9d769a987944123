"""Word vectors of the user's choice (word2vec/GloVe text, .gz, a header line or none), and
text in another language and script trained and tagged end to end."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from tagserve.cli import main
from tagserve.model.artifact import load
from tagserve.model.predictor import Predictor
from tagserve.text.pipeline import build_results, model_inputs, plan_text
from tagserve.text.tokenizer import tokenize
from tagserve.training.vectors import VectorsError, load_vectors, vectors_dim

torch.set_num_threads(1)


def test_reads_glove_rows_word2vec_header_and_gzip(tmp_path: Path) -> None:
    rows = ["Αθήνα 0.1 0.2 0.3", "αθήνα 9 9 9", "Πάτρα -1 0.5 2e-1", "the 1 2 3"]
    glove = tmp_path / "v.txt"
    glove.write_text("\n".join(rows) + "\n", encoding="utf-8")
    word2vec = tmp_path / "v.vec.gz"
    with gzip.open(word2vec, "wt", encoding="utf-8") as sink:
        sink.write("4 3\n" + "\n".join(rows) + "\n")
    for path in (glove, word2vec):
        words, matrix = load_vectors(path)
        # Keyed lower-cased as the model looks words up; the first spelling of a word wins.
        assert words == ["αθήνα", "πάτρα", "the"]
        assert matrix.dtype == np.float32 and matrix.shape == (3, 3)
        np.testing.assert_allclose(matrix[1], [-1, 0.5, 0.2])
        assert vectors_dim(path) == 3
    assert load_vectors(glove, max_rows=2)[0] == ["αθήνα", "πάτρα"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"a 1 2 3\nb 1 2\n", r"v\.txt:2: expected 3 numbers after the word, got 2"),
        (b"2 3\na 1 2 3\nb 1 2\n", r"v\.txt:3: expected 3 numbers after the word, got 2"),
        (b"a 1 2\nb 1 x\n", r"v\.txt:2: 'x' is not a number"),
        (b"a 1 2\n\xff\xfe 1 2\n", r"v\.txt:2: not UTF-8 text \(invalid start byte at byte 0\)"),
        (b"", r"v\.txt: no vectors found \(empty file\?\)"),
        (b"1 3\n", r"v\.txt: no vectors found"),
        (b"a 1 nan\n", r"v\.txt:1: holds a value that is not finite"),
        (b"word\n", r"v\.txt:1: expected a word and its numbers"),
    ],
)
def test_a_bad_vectors_file_names_the_file_and_line(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "v.txt"
    path.write_bytes(content)
    with pytest.raises(VectorsError, match=message):
        load_vectors(path)


# Greek news-like sentences with PER and LOC spans, written as the annotation tools do: raw
# text and character offsets.
PEOPLE = ["Γιάννης Παπαδόπουλος", "Μαρία Κωνσταντίνου", "Νίκος Γεωργίου", "Ελένη Δημητρίου"]
PLACES = ["Αθήνα", "Θεσσαλονίκη", "Πάτρα", "Κρήτη"]
TEMPLATES = [
    "Ο {p} επισκέφθηκε την {l} χθες.",
    "Η {p} ζει στην {l}.",
    "Στην {l} ο {p} μίλησε σε δημοσιογράφους.",
    "Η {p} έφυγε από την {l} το πρωί.",
]


def greek_records(count: int = 16) -> list[dict[str, object]]:
    records = []
    for i in range(count):
        person, place = PEOPLE[i % 4], PLACES[(i // 4 + i) % 4]
        text = TEMPLATES[i % 4].format(p=person, l=place)
        spans = [
            {"start": text.index(name), "end": text.index(name) + len(name), "label": label}
            for name, label in ((person, "PER"), (place, "LOC"))
        ]
        records.append({"text": text, "spans": sorted(spans, key=lambda s: s["start"])})
    return records


def write_data(tmp_path: Path, records: list[dict[str, object]], data_format: str) -> Path:
    """Span JSONL as it is, or CoNLL columns of the tokenizer's tokens."""
    if data_format == "spans":
        path = tmp_path / "train.jsonl"
        lines = [json.dumps(r, ensure_ascii=False) for r in records]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path
    path = tmp_path / "train.txt"
    blocks = []
    for record in records:
        text, spans = str(record["text"]), record["spans"]
        lines = []
        for token in tokenize(text):
            tag = "O"
            for span in spans:  # type: ignore[attr-defined]
                if span["start"] <= token.start < span["end"]:
                    tag = ("B-" if token.start == span["start"] else "I-") + span["label"]
            lines.append(f"{token.text} {tag}")
        blocks.append("\n".join(lines))
    path.write_text("\n\n".join(blocks) + "\n", encoding="utf-8")
    return path


def write_vectors(path: Path, records: list[dict[str, object]], dim: int = 8) -> Path:
    """A tiny word2vec-format file (header line, gzip) for the words of the records."""
    rng = random.Random(0)
    words = sorted({t.text.lower() for r in records for t in tokenize(str(r["text"]))})
    rows = [f"{w} " + " ".join(f"{rng.uniform(-1, 1):.4f}" for _ in range(dim)) for w in words]
    with gzip.open(path, "wt", encoding="utf-8") as sink:
        sink.write(f"{len(rows)} {dim}\n" + "\n".join(rows) + "\n")
    return path


@pytest.mark.parametrize(("data_format", "vectors"), [("spans", "file"), ("conll", "none")])
def test_greek_trains_and_tags_end_to_end(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], data_format: str, vectors: str
) -> None:
    records = greek_records()
    train = write_data(tmp_path, records, data_format)
    vectors_arg = (
        str(write_vectors(tmp_path / "el.vec.gz", records)) if vectors == "file" else vectors
    )
    out = tmp_path / "el"
    command = ["train", "--train", str(train), "--dev", str(train), "--output", str(out)]
    options = {
        "training.epochs": 30, "training.optimizer": '"adam"', "training.lr": 0.01,
        "training.batch_size": 4, "training.word_dropout": 0, "training.lr_decay": 0,
        "training.case_augmentation.upper": 0, "training.case_augmentation.lower": 0,
        "model.hidden_size": 32, "model.char_channels": 16, "model.dropout": 0,
    }  # fmt: skip
    sets = [arg for key, value in options.items() for arg in ("--set", f"{key}={value}")]
    assert main([*command, "--vectors", vectors_arg, "--no-progress", *sets]) == 0
    printed = capsys.readouterr()
    assert json.loads(printed.out.strip().splitlines()[-1])["dev_f1"] == 100.0
    if data_format == "spans":  # what the readers did is printed before training
        assert f"{train} (spans): 16 records, 32 spans (LOC 16, PER 16)" in printed.err

    bundle = load(out)
    # word_dim from the vectors file; its Greek words are in the vocabulary.
    assert bundle.config.word_dim == (8 if vectors == "file" else 50)
    assert "αθήνα" in bundle.words
    # Raw text through the service's pipeline: tokens and entities with exact offsets.
    text = str(records[1]["text"])  # "Η Μαρία Κωνσταντίνου ζει στην Θεσσαλονίκη."
    plans = [plan_text(text, bundle.card.tokenizer, 100)]
    tagged = Predictor(bundle).predict(model_inputs(plans, bundle.card.tokenizer))
    [result] = build_results(plans, tagged, bundle.labels.scheme)
    assert [t["text"] for t in result["tokens"]] == [t.text for t in tokenize(text)]
    assert [t["text"] for t in result["tokens"]][-2:] == ["Θεσσαλονίκη", "."]
    entities = [(e["start"], e["end"], e["label"], e["text"]) for e in result["entities"]]
    expected = [(s["start"], s["end"], s["label"]) for s in records[1]["spans"]]  # type: ignore[attr-defined]
    assert [e[:3] for e in entities] == expected
    assert all(text[start:end] == name for start, end, _, name in entities)


def test_word_dim_comes_from_the_vectors_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tagserve.model.artifact import save
    from tests.conftest import make_bundle

    records = greek_records(4)
    train = write_data(tmp_path, records, "conll")
    vectors = write_vectors(tmp_path / "el.vec.gz", records, dim=8)
    command = ["train", "--train", str(train), "--dev", str(train), "--vectors", str(vectors)]
    command += ["--output", str(tmp_path / "out")]
    assert main([*command, "--set", "model.word_dim=300"]) == 2
    error = capsys.readouterr().err
    assert "model.word_dim is 300 but the vectors in" in error and "are 8-d" in error
    # An init model's word table is 50 wide: 8-d vectors cannot fill its new rows.
    save(make_bundle(), tmp_path / "init")
    assert main([*command, "--init", str(tmp_path / "init")]) == 2
    assert "the init model's word_dim is 50 but the vectors" in capsys.readouterr().err
