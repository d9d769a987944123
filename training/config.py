"""Training configuration read from TOML or YAML and validated (pydantic) before any data is
read: a wrong type, an unknown key or choice, or a syntax error is one line naming the file
and the key."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tagserve.model.card import TokenizerStyle
from tagserve.model.config import Architecture
from tagserve.model.schemes import Scheme

DEFAULT_DATA_DIR = "../shared/data"


def data_dir(override: str | Path | None = None) -> Path:
    """Root of the reference data: a flag, else ``TAGSERVE_DATA_DIR``, else ``../shared/data``."""
    return Path(override or os.environ.get("TAGSERVE_DATA_DIR") or DEFAULT_DATA_DIR)


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DataConfig(_Section):
    """Where the data is; relative paths are resolved against the data directory."""

    train: str
    dev: str
    test: str | None = None
    format: Literal["conll", "bio", "auto"] = "auto"
    strict: bool = False


class ModelSection(Architecture):
    """The network's architecture (defaults in :class:`Architecture`) plus the label scheme
    and the vocabulary choices, which the trainer turns into a ``TaggerConfig``."""

    scheme: Scheme = "BIOES"
    glove_rows: int = Field(100_000, ge=0)
    pretrained: bool = True
    intents: bool = Field(
        False, description="add the intent head (the training data must carry intent labels)"
    )


class CaseAugmentation(_Section):
    """Share of training sentences shown, each epoch afresh, in another casing.

    The word lookup is lower-cased already (GloVe 6B is), so only the character encoder and
    the casing feature see case; a model trained on Reuters casing alone learns that
    capitalisation marks names and finds none in lower-case text. Re-cased copies of the
    sentences (tags unchanged) teach it the other cues (Mayhew et al., 2019)."""

    lower: float = Field(0.0, ge=0, le=1, description="share shown all lower-case")
    upper: float = Field(0.0, ge=0, le=1, description="share shown all upper-case")

    @model_validator(mode="after")
    def _shares_fit(self) -> CaseAugmentation:
        if self.lower + self.upper > 1:
            raise ValueError(f"lower + upper must be at most 1, got {self.lower + self.upper}")
        return self


class Distillation(_Section):
    """A teacher artifact whose per-token marginals the student learns beside the gold tags
    (:mod:`tagserve.training.distillation`); off without a teacher."""

    teacher: str | None = Field(
        None, min_length=1, description="artifact directory or shipped model name (e.g. ner)"
    )
    weight: float = Field(0.5, ge=0, description="of the soft-target term beside the gold NLL")
    temperature: float = Field(1.0, gt=0, description="divides the CRF's scores (>1: softer)")


class OptimConfig(_Section):
    """Optimiser and schedule."""

    epochs: int = Field(50, ge=1)
    batch_size: int = Field(10, ge=1)
    optimizer: Literal["sgd", "adam", "nadam"] = "sgd"
    lr: float = Field(0.015, gt=0)
    momentum: float = Field(0.9, ge=0)
    lr_decay: float = Field(0.05, ge=0)
    weight_decay: float = Field(0.0, ge=0)
    clip_norm: float = Field(5.0, ge=0)
    word_dropout: float = Field(0.05, ge=0, lt=1)
    weight_average: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="decay of an exponential moving average of the weights, updated every "
        "step; dev scores and the saved artifact use the average (0 = off)",
    )
    patience: int = Field(10, ge=1)
    seed: int = 42
    max_minutes: float | None = Field(None, gt=0)
    tag_loss_weight: float = Field(1.0, ge=0)
    intent_loss_weight: float = Field(1.0, ge=0)
    select_by: Literal["f1", "intent_accuracy", "frame_accuracy"] = Field(
        "f1", description="the dev metric that picks the saved epoch"
    )
    case_augmentation: CaseAugmentation = Field(default_factory=CaseAugmentation)
    distillation: Distillation = Field(default_factory=Distillation)


class ArtifactConfig(_Section):
    """What the shipped model says about itself (its model card)."""

    name: str = Field("model", min_length=1)
    version: str = "1.0.0"
    dataset: str = ""
    description: str = ""
    # How the service must tokenize raw text for this model (see tagserve/text/tokenizer.py).
    tokenizer: TokenizerStyle = "conll"
    lowercase: bool = False


class TrainConfig(_Section):
    """The whole training recipe."""

    data: DataConfig
    model: ModelSection = Field(default_factory=ModelSection)
    training: OptimConfig = Field(default_factory=OptimConfig)
    artifact: ArtifactConfig = Field(default_factory=ArtifactConfig)


def load_config(path: Path, overrides: list[str] | None = None) -> TrainConfig:
    """Read a ``.toml``, ``.yaml`` or ``.yml`` file, apply ``overrides`` and validate.

    ``overrides`` are ``section.key=value`` strings (value as a TOML literal, or a bare word),
    so an ablation is the same command with one change. Every problem is a ``ValueError``
    whose message names the file and the key.
    """
    path = Path(path)
    raw = _read(path)
    for override in overrides or []:
        section, key, value = _parse_override(override)
        if not isinstance(raw.setdefault(section, {}), dict):
            raise ValueError(f"{path}: [{section}] must be a table")
        raw[section][key] = value
    try:
        return TrainConfig.model_validate(raw)
    except ValidationError as error:
        raise ValueError(f"{path}: {_first_problem(error)}") from None


def _read(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: config file not found") from None
    if path.suffix == ".toml":
        try:
            raw: Any = tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            raise ValueError(f"{path}: TOML syntax error: {error}") from None
    elif path.suffix in {".yaml", ".yml"}:
        import yaml

        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise ValueError(f"{path}: YAML syntax error: {' '.join(str(error).split())}") from None
    else:
        raise ValueError(f"{path}: expected a .toml, .yaml or .yml config")
    if not isinstance(raw, dict) or "data" not in raw:
        raise ValueError(f"{path}: expected a [data] section with train and dev paths")
    return raw


def _first_problem(error: ValidationError) -> str:
    """``[training] epochs: Input should be a valid integer (got 'five')``."""
    first = error.errors()[0]
    location = [str(part) for part in first["loc"]]
    if first["type"] == "extra_forbidden":
        where = f"[{'.'.join(location[:-1])}]" if len(location) > 1 else "the top level"
        return f"unknown key in {where}: {location[-1]}"
    section = f"[{location[0]}] " if len(location) > 1 else ""
    key = ".".join(location[1:]) or location[0]
    got = f" (got {first['input']!r})" if first["type"] != "missing" else ""
    return f"{section}{key}: {first['msg']}{got}"


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
