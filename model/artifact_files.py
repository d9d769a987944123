"""The JSON side of a model artifact, read without torch: the model card, the labels and the
intents are all an HTTP worker needs (the model itself runs in a model worker), and importing
torch alone costs a process about 150 MB.

:mod:`tagserve.model.artifact` loads the whole artifact with these same checks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from tagserve.model.card import ModelCard
from tagserve.model.config import TaggerConfig
from tagserve.model.vocab import LabelSet

CONFIG_FILE = "config.json"
VOCAB_FILE = "vocab.json"
LABELS_FILE = "labels.json"
METADATA_FILE = "metadata.json"
WEIGHTS_FILE = "weights.safetensors"
SHIPPED_MODELS_DIR = Path(__file__).parent / "artifacts"
_Record = TypeVar("_Record", bound=BaseModel)


class ArtifactError(Exception):
    """A model directory that cannot be loaded; the message names the file and the problem."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"model artifact {path}: {problem}")
        self.path = path
        self.problem = problem


@dataclass
class ArtifactInfo:
    """What serving needs of a model besides the network: its card, labels and intents."""

    labels: LabelSet
    card: ModelCard
    config: TaggerConfig
    # Sentence-level labels of the intent head, in its output order; empty without a head.
    intents: list[str] = field(default_factory=list)


def read_info(directory: Path) -> ArtifactInfo:
    """The card, labels and intents of an artifact, checked as :func:`~tagserve.model.artifact.load`
    checks them, or an :class:`ArtifactError`; the weights are not read."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ArtifactError(directory, "no such model directory")
    config_data = read_json(directory / CONFIG_FILE)
    # Artifacts of tagserve 0.1 kept the scheme in config.json too; labels.json holds it now.
    legacy_scheme = config_data.pop("scheme", None) if isinstance(config_data, dict) else None
    config = validated(TaggerConfig, directory / CONFIG_FILE, config_data)
    card = validated(ModelCard, directory / METADATA_FILE, read_json(directory / METADATA_FILE))
    label_data = read_json(directory / LABELS_FILE)
    labels = read_labels(directory / LABELS_FILE, label_data, config)
    intents = read_intents(directory / LABELS_FILE, label_data, config)
    if legacy_scheme is not None and legacy_scheme != labels.scheme:
        raise ArtifactError(
            directory / CONFIG_FILE,
            f"scheme: {legacy_scheme} differs from labels.json's {labels.scheme}",
        )
    return ArtifactInfo(labels, card, config, intents)


def validated(record: type[_Record], path: Path, data: Any) -> _Record:
    """``data`` as ``record``, or an :class:`ArtifactError` naming the first bad field."""
    try:
        return record.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "(file)"
        raise ArtifactError(path, f"{field}: {first['msg']}") from None


def resolve(name_or_path: str, models_dir: Path = SHIPPED_MODELS_DIR) -> Path:
    """A shipped model's name (``ner``, ``slots``) or an artifact directory → its path."""
    candidate = Path(name_or_path)
    if candidate.is_dir():
        return candidate
    named = models_dir / name_or_path
    if name_or_path in available(models_dir) and named.is_dir():
        return named
    known = ", ".join(available(models_dir)) or "none"
    raise ArtifactError(
        candidate, f"neither a model directory nor a shipped model name (known: {known})"
    )


def available(models_dir: Path = SHIPPED_MODELS_DIR) -> list[str]:
    """Names of the artifact directories under ``models_dir``."""
    if not models_dir.is_dir():
        return []
    return sorted(p.name for p in models_dir.iterdir() if (p / CONFIG_FILE).is_file())


def read_labels(path: Path, data: Any, config: TaggerConfig) -> LabelSet:
    if not isinstance(data, dict) or not {"scheme", "labels"} <= set(data):
        raise ArtifactError(path, "expected an object with 'scheme' and 'labels'")
    try:
        labels = LabelSet(list(data["labels"]), data["scheme"])
    except (TypeError, ValueError) as error:
        raise ArtifactError(path, f"invalid label set: {error}") from None
    if len(labels) != config.num_tags:
        raise ArtifactError(
            path, f"config.json expects {config.num_tags} tags, file has {len(labels)}"
        )
    return labels


def read_intents(path: Path, data: dict[str, Any], config: TaggerConfig) -> list[str]:
    intents = data.get("intents", [])
    if not isinstance(intents, list) or not all(isinstance(i, str) and i for i in intents):
        raise ArtifactError(path, "intents: expected a list of non-empty strings")
    if len(set(intents)) != len(intents):
        raise ArtifactError(path, "intents: duplicate entries")
    if len(intents) != config.num_intents:
        raise ArtifactError(
            path, f"intents: config.json expects {config.num_intents}, file has {len(intents)}"
        )
    return list(intents)


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArtifactError(path, "file is missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ArtifactError(path, f"not valid JSON ({error})") from None
