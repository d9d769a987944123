"""Save and load a model as a self-contained directory of JSON files and safetensors weights.

No pickle anywhere: ``config.json`` (the network's :class:`TaggerConfig`), ``vocab.json``
(words and characters), ``labels.json`` (scheme and tags), ``metadata.json`` (the
:class:`ModelCard`: input contract, scores, provenance) and ``weights.safetensors``. Each fact
lives in one file, and every file is validated here, so an artifact that loads can serve.
The word embedding is stored in float16 to keep artifacts small.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
from pydantic import BaseModel, ValidationError
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from tagserve.model.card import ModelCard
from tagserve.model.config import TaggerConfig
from tagserve.model.network import Tagger
from tagserve.model.schemes import allowed_transitions
from tagserve.model.vocab import LabelSet, Vocabulary

CONFIG_FILE = "config.json"
VOCAB_FILE = "vocab.json"
LABELS_FILE = "labels.json"
METADATA_FILE = "metadata.json"
WEIGHTS_FILE = "weights.safetensors"
_HALF_PRECISION = {"word_embedding.weight"}
SHIPPED_MODELS_DIR = Path(__file__).parent / "artifacts"
_Record = TypeVar("_Record", bound=BaseModel)


class ArtifactError(Exception):
    """A model directory that cannot be loaded; the message names the file and the problem."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"model artifact {path}: {problem}")
        self.path = path
        self.problem = problem


@dataclass
class ModelBundle:
    """A network with everything needed to turn text into tags: vocabularies, labels, card."""

    network: Tagger
    words: Vocabulary
    chars: Vocabulary
    labels: LabelSet
    card: ModelCard
    # Sentence-level labels of the intent head, in its output order; empty without a head.
    intents: list[str] = field(default_factory=list)

    @property
    def config(self) -> TaggerConfig:
        """The network's constructor arguments."""
        return self.network.config


def build_network(config: TaggerConfig, labels: LabelSet) -> Tagger:
    """A fresh network whose CRF forbids the transitions the labels' scheme forbids."""
    if len(labels) != config.num_tags:
        raise ValueError(f"expected {config.num_tags} tags, got {len(labels)}")
    return Tagger(config, allowed_transitions(labels.labels, labels.scheme))


def save(bundle: ModelBundle, directory: Path) -> None:
    """Write ``bundle`` to ``directory`` (created if needed), overwriting an earlier artifact."""
    directory.mkdir(parents=True, exist_ok=True)
    _write_json(directory / CONFIG_FILE, bundle.config.model_dump(mode="json"))
    _write_json(
        directory / VOCAB_FILE, {"words": bundle.words.tokens, "chars": bundle.chars.tokens}
    )
    label_data: dict[str, Any] = {"scheme": bundle.labels.scheme, "labels": bundle.labels.labels}
    if bundle.intents:
        label_data["intents"] = bundle.intents
    _write_json(directory / LABELS_FILE, label_data)
    _write_json(directory / METADATA_FILE, bundle.card.model_dump(mode="json"))
    tensors = {
        name: (value.half() if name in _HALF_PRECISION else value).detach().cpu().contiguous()
        for name, value in bundle.network.state_dict().items()
    }
    save_file(tensors, str(directory / WEIGHTS_FILE))
    # safetensors writes 0600; the service may run as another user than the trainer.
    for path in directory.iterdir():
        path.chmod(0o644)


def save_card(directory: Path, card: ModelCard) -> None:
    """Rewrite only ``metadata.json`` (e.g. to add scores measured after training)."""
    _write_json(Path(directory) / METADATA_FILE, card.model_dump(mode="json"))


def load(directory: Path, device: torch.device | str = "cpu") -> ModelBundle:
    """Load and check an artifact onto ``device`` in eval mode, or raise :class:`ArtifactError`
    naming the file and the field at fault."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ArtifactError(directory, "no such model directory")
    config_data = _read_json(directory / CONFIG_FILE)
    # Artifacts of tagserve 0.1 kept the scheme in config.json too; labels.json holds it now.
    legacy_scheme = config_data.pop("scheme", None) if isinstance(config_data, dict) else None
    config = _validated(TaggerConfig, directory / CONFIG_FILE, config_data)
    card = _validated(ModelCard, directory / METADATA_FILE, _read_json(directory / METADATA_FILE))
    words, chars = _vocabularies(directory / VOCAB_FILE, _read_json(directory / VOCAB_FILE), config)
    label_data = _read_json(directory / LABELS_FILE)
    labels = _labels(directory / LABELS_FILE, label_data, config)
    intents = _intents(directory / LABELS_FILE, label_data, config)
    if legacy_scheme is not None and legacy_scheme != labels.scheme:
        raise ArtifactError(
            directory / CONFIG_FILE,
            f"scheme: {legacy_scheme} differs from labels.json's {labels.scheme}",
        )
    network = build_network(config, labels)
    weights_path = directory / WEIGHTS_FILE
    try:
        state = load_file(str(weights_path))
    except FileNotFoundError:
        raise ArtifactError(weights_path, "file is missing") from None
    except (SafetensorError, OSError, ValueError) as error:
        raise ArtifactError(weights_path, f"cannot read weights ({error})") from None
    state = {
        name: value.float() if name in _HALF_PRECISION else value for name, value in state.items()
    }
    try:
        network.load_state_dict(state)
    except RuntimeError as error:
        first_line = str(error).strip().splitlines()
        problem = " ".join(line.strip() for line in first_line[:3])
        raise ArtifactError(weights_path, f"weights do not match config.json: {problem}") from None
    network.to(device).eval()
    return ModelBundle(network, words, chars, labels, card, intents)


def _validated(record: type[_Record], path: Path, data: Any) -> _Record:
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


def _vocabularies(path: Path, data: Any, config: TaggerConfig) -> tuple[Vocabulary, Vocabulary]:
    try:
        words = Vocabulary(list(data["words"]))
        chars = Vocabulary(list(data["chars"]))
    except (KeyError, TypeError, ValueError) as error:
        raise ArtifactError(path, f"expected 'words' and 'chars' lists ({error})") from None
    if len(words) != config.num_words:
        raise ArtifactError(
            path, f"config.json expects {config.num_words} words, file has {len(words)}"
        )
    if len(chars) != config.num_chars:
        raise ArtifactError(
            path, f"config.json expects {config.num_chars} chars, file has {len(chars)}"
        )
    return words, chars


def _labels(path: Path, data: Any, config: TaggerConfig) -> LabelSet:
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


def _intents(path: Path, data: dict[str, Any], config: TaggerConfig) -> list[str]:
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


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArtifactError(path, "file is missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ArtifactError(path, f"not valid JSON ({error})") from None


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
