"""Training configuration read from TOML or YAML and validated (pydantic) before any data is
read: a wrong type, an unknown key or choice, or a syntax error is one line naming the file
and the key."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tagserve.model.card import TokenizerStyle
from tagserve.model.config import Architecture
from tagserve.model.schemes import Scheme
from tagserve.training.readers import DataFormat

DEFAULT_DATA_DIR = "../shared/data"


def data_dir(override: str | Path | None = None) -> Path:
    """Root of the reference data: a flag, else ``TAGSERVE_DATA_DIR``, else ``../shared/data``."""
    return Path(override or os.environ.get("TAGSERVE_DATA_DIR") or DEFAULT_DATA_DIR)


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DataConfig(_Section):
    """Where the data is; relative paths are resolved against the data directory.

    Dev is a file (``dev``) or a share of the training sentences (``dev_split``, drawn with
    ``training.seed``, so the same config splits the same way again). ``misaligned``,
    ``overlaps`` and ``offsets`` apply to the annotation-tool formats only."""

    train: str
    dev: str | None = None
    dev_split: float | None = Field(
        None, gt=0, lt=1, description="share of the training sentences held out as dev"
    )
    test: str | None = None
    format: DataFormat = "auto"
    strict: bool = False
    misaligned: Literal["expand", "contract", "error"] = Field(
        "expand", description="a span whose ends fall inside a token"
    )
    overlaps: Literal["error", "longest"] = "error"
    offsets: Literal["codepoints", "utf16"] = "codepoints"

    @model_validator(mode="after")
    def _one_dev(self) -> DataConfig:
        if self.dev is None and self.dev_split is None:
            raise ValueError("needs dev (a file) or dev_split (a share of train)")
        if self.dev is not None and self.dev_split is not None:
            raise ValueError("give dev (a file) or dev_split (a share of train), not both")
        return self


class ModelSection(Architecture):
    """The network's architecture (defaults in :class:`Architecture`) plus the label scheme
    and the vocabulary choices, which the trainer turns into a ``TaggerConfig``."""

    scheme: Scheme = "BIOES"
    glove_rows: int = Field(
        100_000, ge=0, description="rows read from the vectors (GloVe or a --vectors file)"
    )
    pretrained: bool = Field(True, description="start word vectors from pretrained ones")
    vectors: str | None = Field(
        None,
        min_length=1,
        description="word2vec/GloVe text file (optionally .gz); unset: the English GloVe 6B "
        "package. word_dim comes from the file",
    )
    init: str | None = Field(
        None,
        min_length=1,
        description="artifact directory or shipped model name to start from: its weights, "
        "vocabularies and architecture",
    )
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
    raw = read_raw(path)
    if "data" not in raw:
        raise ValueError(f"{path}: expected a [data] section with train and dev paths")
    apply_overrides(raw, overrides or [], str(path))
    return validate(raw, str(path))


def apply_overrides(raw: dict[str, Any], overrides: list[str], source: str) -> None:
    """Set each ``section.key=value`` (or ``section.sub.key=value``) in ``raw``, in order."""
    for override in overrides:
        keys, value = parse_override(override)
        table = raw
        for depth, key in enumerate(keys[:-1]):
            table = table.setdefault(key, {})
            if not isinstance(table, dict):
                raise ValueError(f"{source}: [{'.'.join(keys[: depth + 1])}] must be a table")
        table[keys[-1]] = value


def validate(raw: dict[str, Any], source: str) -> TrainConfig:
    """``raw`` as a :class:`TrainConfig`, or a ``ValueError`` naming ``source`` and the key."""
    try:
        return TrainConfig.model_validate(raw)
    except ValidationError as error:
        raise ValueError(f"{source}: {_first_problem(error)}") from None


def save_config(config: TrainConfig, path: Path) -> None:
    """Write every field of ``config`` as YAML that :func:`load_config` reads back to the
    same config (unset optional values, which YAML and TOML cannot write, are left out)."""

    def drop_none(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: drop_none(v) for k, v in value.items() if v is not None}
        return value

    data = drop_none(config.model_dump(mode="json"))
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    path.write_text(text, encoding="utf-8")


def read_raw(path: Path) -> dict[str, Any]:
    """The config file's tables as plain values, before any check of their contents."""
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
        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise ValueError(f"{path}: YAML syntax error: {' '.join(str(error).split())}") from None
    else:
        raise ValueError(f"{path}: expected a .toml, .yaml or .yml config")
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected tables such as [data], [model] and [training]")
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


def parse_override(text: str) -> tuple[list[str], Any]:
    """``model.rnn=gru`` → ``(["model", "rnn"], "gru")``, and deeper names the same way
    (``training.case_augmentation.lower=0``); values are read as TOML literals."""
    name, sep, literal = text.partition("=")
    keys = [key.strip() for key in name.split(".")]
    if not sep or len(keys) < 2 or not all(keys):
        raise ValueError(f"override {text!r}: expected SECTION.KEY=VALUE, e.g. model.rnn=gru")
    try:
        value = tomllib.loads(f"v = {literal.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = literal.strip()
    return keys, value
