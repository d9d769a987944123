"""Shared fixtures: a small random-weight artifact, the reference data (skipped off CI only)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

from tagserve.model.artifact import SHIPPED_MODELS_DIR, ModelBundle, build_network, save
from tagserve.model.card import ModelCard, TokenizerSpec
from tagserve.model.config import TaggerConfig
from tagserve.model.schemes import labels_for
from tagserve.model.vocab import LabelSet, Vocabulary

ROOT = Path(__file__).resolve().parent.parent
ENTITY_TYPES = ["LOC", "MISC", "ORG", "PER"]


def make_bundle(scheme: str = "BIOES", decoder: str = "crf", seed: int = 0) -> ModelBundle:
    """A small untrained model: enough to exercise shapes, batching, save/load and the service."""
    torch.manual_seed(seed)
    words = Vocabulary.from_tokens(
        ["<pad>", "<unk>", "harry", "potter", "and", "hermione", "granger", "the"]
    )
    chars = Vocabulary.from_tokens(
        ["<pad>", "<unk>", *"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.,"]
    )
    labels = LabelSet(labels_for(ENTITY_TYPES, scheme), scheme)  # type: ignore[arg-type]
    config = TaggerConfig(
        num_words=len(words),
        num_chars=len(chars),
        num_tags=len(labels),
        hidden_size=16,
        char_channels=8,
        char_dim=8,
        decoder=decoder,  # type: ignore[arg-type]
    )
    network = build_network(config, labels).eval()
    card = ModelCard(
        name="tiny", version="0.0.1", dataset="none", tokenizer=TokenizerSpec(style="conll")
    )
    return ModelBundle(network, words, chars, labels, card)


@pytest.fixture
def tiny_bundle() -> ModelBundle:
    return make_bundle()


@pytest.fixture
def tiny_artifact(tmp_path: Path) -> Path:
    """A saved random-weight model directory named ``tiny``."""
    directory = tmp_path / "models" / "tiny"
    save(make_bundle(), directory)
    return directory


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """``../shared/data`` (or ``$TAGSERVE_DATA_DIR``); skips when absent, fails under CI."""
    path = Path(os.environ.get("TAGSERVE_DATA_DIR", ROOT.parent / "shared" / "data"))
    if not (path / "conll2003").is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"reference data not found at {path} (CI must have ../shared/data)")
        pytest.skip(f"reference data not found at {path}")
    return path


@pytest.fixture(scope="session")
def shipped_models_dir() -> Path:
    """The shipped artifacts; fails when missing, since they are part of the product."""
    for name in ("ner", "ner-fast", "slots"):
        if not (SHIPPED_MODELS_DIR / name / "config.json").is_file():
            pytest.fail(f"shipped model {name!r} missing under {SHIPPED_MODELS_DIR}")
    return SHIPPED_MODELS_DIR


@pytest.fixture(scope="module")
def nginx() -> str:
    """The nginx binary (Debian's package, which .ci/run installs); skipped when absent, but
    fails under CI."""
    found = shutil.which("nginx", path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")
    if found is None:
        message = "nginx is not installed (apt-get install nginx)"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return found
