"""An artifact is checked when it is read: a card or file that cannot serve is refused with
one line naming the file and the field; artifacts written by tagserve 0.1 still load."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, get_args

import pytest

from tagserve.model.artifact import ArtifactError, load, save
from tagserve.model.card import TokenizerStyle
from tagserve.text import tokenizer
from tests.conftest import make_bundle


def _edit(path: Path, change: Any) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


@pytest.fixture
def artifact(tmp_path: Path) -> Path:
    save(make_bundle(), tmp_path / "m")
    return tmp_path / "m"


@pytest.mark.parametrize(
    ("file", "change", "message"),
    [
        (
            "metadata.json",
            lambda d: d["tokenizer"].update(style="spacy"),
            r"metadata\.json: tokenizer\.style: Input should be 'conll' or 'atis'",
        ),
        (
            "metadata.json",
            lambda d: d.update(tokenizer="spacy"),
            r"metadata\.json: tokenizer: Input should be a valid dictionary",
        ),
        (
            "metadata.json",
            lambda d: d.pop("tokenizer"),
            r"metadata\.json: tokenizer: Field required",
        ),
        (
            "metadata.json",
            lambda d: d.update(lowercse=True),
            r"metadata\.json: lowercse: Extra inputs are not permitted",
        ),
        (
            "config.json",
            lambda d: d.update(hidden_size=-3),
            r"config\.json: hidden_size: Input should be greater than or equal to 1",
        ),
        ("config.json", lambda d: d.update(rnn="rnn"), r"config\.json: rnn: Input should be"),
        (
            "labels.json",
            lambda d: d.update(scheme="IOBES"),
            r"labels\.json: invalid label set: unknown tagging scheme 'IOBES'",
        ),
    ],
)
def test_a_card_that_cannot_serve_is_refused_at_load(
    artifact: Path, file: str, change: Any, message: str
) -> None:
    _edit(artifact / file, change)
    with pytest.raises(ArtifactError, match=message) as raised:
        load(artifact)
    assert "\n" not in str(raised.value)


def test_missing_label_file_and_mismatched_dimensions_are_named(artifact: Path) -> None:
    (artifact / "labels.json").unlink()
    with pytest.raises(ArtifactError, match=r"labels\.json: file is missing"):
        load(artifact)
    save(make_bundle(), artifact)
    _edit(artifact / "config.json", lambda d: d.update(hidden_size=32))
    with pytest.raises(ArtifactError, match=r"weights\.safetensors: weights do not match config"):
        load(artifact)


def test_version_0_1_artifacts_load_unchanged(artifact: Path) -> None:
    """0.1 wrote the scheme into config.json and metadata.json and entity types beside it."""
    bundle = load(artifact)
    _edit(artifact / "config.json", lambda d: d.update(scheme="BIOES"))
    _edit(artifact / "metadata.json", lambda d: d.update(scheme="BIOES", entity_types=["PER"]))
    legacy = load(artifact)
    assert (legacy.card, legacy.labels, legacy.config) == (
        bundle.card,
        bundle.labels,
        bundle.config,
    )
    _edit(artifact / "config.json", lambda d: d.update(scheme="BIO"))
    with pytest.raises(ArtifactError, match=r"config\.json: scheme: BIO differs from labels"):
        load(artifact)


def test_every_style_a_card_may_name_has_a_tokenizer() -> None:
    assert set(tokenizer.STYLES) == set(get_args(TokenizerStyle))
