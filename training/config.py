"""Training configuration read from TOML or YAML, validated before any work starts."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

DEFAULT_DATA_DIR = "../shared/data"


def data_dir(override: str | Path | None = None) -> Path:
    """Root of the reference data: a flag, else ``TAGSERVE_DATA_DIR``, else ``../shared/data``."""
    return Path(override or os.environ.get("TAGSERVE_DATA_DIR") or DEFAULT_DATA_DIR)


@dataclass
class DataConfig:
    """Where the data is; relative paths are resolved against the data directory."""

    train: str
    dev: str
    test: str | None = None
    format: Literal["conll", "bio", "auto"] = "auto"
    strict: bool = False


@dataclass
class ModelSection:
    """Network choices (see :class:`model.config.TaggerConfig`) plus vocabulary choices."""

    scheme: Literal["BIO", "BIOES"] = "BIOES"
    word_dim: int = 50
    casing_dim: int = 8
    char_encoder: Literal["cnn", "lstm", "none"] = "cnn"
    char_dim: int = 30
    char_channels: int = 50
    char_kernel: int = 3
    max_word_chars: int = 30
    rnn: Literal["lstm", "gru"] = "lstm"
    hidden_size: int = 200
    num_layers: int = 1
    bidirectional: bool = True
    dropout: float = 0.5
    decoder: Literal["crf", "softmax"] = "crf"
    glove_rows: int = 100_000
    pretrained: bool = True


@dataclass
class OptimConfig:
    """Optimiser and schedule."""

    epochs: int = 50
    batch_size: int = 10
    optimizer: Literal["sgd", "adam", "nadam"] = "sgd"
    lr: float = 0.015
    momentum: float = 0.9
    lr_decay: float = 0.05
    weight_decay: float = 0.0
    clip_norm: float = 5.0
    word_dropout: float = 0.05
    patience: int = 10
    seed: int = 42
    max_minutes: float | None = None


@dataclass
class ArtifactConfig:
    """What the shipped model says about itself."""

    name: str = "model"
    version: str = "1.0.0"
    dataset: str = ""
    description: str = ""
    # How the service must tokenize raw text for this model (see service/tokenizer.py).
    tokenizer: Literal["conll", "atis"] = "conll"
    lowercase: bool = False


@dataclass
class TrainConfig:
    """The whole training recipe."""

    data: DataConfig
    model: ModelSection = field(default_factory=ModelSection)
    training: OptimConfig = field(default_factory=OptimConfig)
    artifact: ArtifactConfig = field(default_factory=ArtifactConfig)


def load_config(path: Path, overrides: list[str] | None = None) -> TrainConfig:
    """Read a ``.toml``, ``.yaml`` or ``.yml`` file; unknown keys are errors that name the section.

    ``overrides`` are ``section.key=value`` strings (value as a TOML literal, or a bare word),
    so an ablation is the same command with one change.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".toml":
        raw: Any = tomllib.loads(text)
    elif path.suffix in {".yaml", ".yml"}:
        import yaml

        raw = yaml.safe_load(text)
    else:
        raise ValueError(f"{path}: expected a .toml, .yaml or .yml config")
    if not isinstance(raw, dict) or "data" not in raw:
        raise ValueError(f"{path}: expected a [data] section with train and dev paths")
    for override in overrides or []:
        section, key, value = _parse_override(override)
        raw.setdefault(section, {})[key] = value
    sections: dict[str, type] = {
        "data": DataConfig,
        "model": ModelSection,
        "training": OptimConfig,
        "artifact": ArtifactConfig,
    }
    unknown = sorted(set(raw) - set(sections))
    if unknown:
        raise ValueError(f"{path}: unknown sections {', '.join(unknown)}")
    built = {}
    for name, cls in sections.items():
        values = raw.get(name, {})
        allowed = {f.name for f in fields(cls)}
        extra = sorted(set(values) - allowed)
        if extra:
            raise ValueError(f"{path}: unknown keys in [{name}]: {', '.join(extra)}")
        try:
            built[name] = cls(**values)
        except TypeError as error:
            raise ValueError(f"{path}: [{name}]: {error}") from None
    return TrainConfig(**built)


def _parse_override(text: str) -> tuple[str, str, Any]:
    """``model.rnn=gru`` → ``("model", "rnn", "gru")``; values are read as TOML literals."""
    name, sep, literal = text.partition("=")
    section, dot, key = name.strip().partition(".")
    if not sep or not dot or not key:
        raise ValueError(f"override {text!r}: expected SECTION.KEY=VALUE, e.g. model.rnn=gru")
    try:
        value = tomllib.loads(f"v = {literal.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = literal.strip()
    return section, key, value
