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
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from tagserve.model.artifact_files import (
    CONFIG_FILE,
    LABELS_FILE,
    METADATA_FILE,
    SHIPPED_MODELS_DIR,
    VOCAB_FILE,
    WEIGHTS_FILE,
    ArtifactError,
    ArtifactInfo,
    available,
    read_info,
    read_json,
    resolve,
)
from tagserve.model.card import ModelCard
from tagserve.model.config import TaggerConfig
from tagserve.model.network import Tagger
from tagserve.model.schemes import allowed_transitions
from tagserve.model.vocab import LabelSet, Vocabulary

__all__ = [
    "SHIPPED_MODELS_DIR",
    "ArtifactError",
    "ArtifactInfo",
    "ModelBundle",
    "available",
    "build_network",
    "load",
    "read_info",
    "resolve",
    "save",
    "save_card",
]
_HALF_PRECISION = {"word_embedding.weight"}


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

    @property
    def info(self) -> ArtifactInfo:
        """What serving needs besides the network (what :func:`read_info` reads)."""
        return ArtifactInfo(self.labels, self.card, self.config, self.intents)


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
    info = read_info(directory)
    config, labels, card, intents = info.config, info.labels, info.card, info.intents
    directory = Path(directory)
    words, chars = _vocabularies(directory / VOCAB_FILE, read_json(directory / VOCAB_FILE), config)
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


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
