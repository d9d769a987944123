"""Save and load a model as a self-contained directory of JSON files and safetensors weights.

No pickle anywhere: ``config.json`` (constructor arguments), ``vocab.json`` (words and
characters), ``labels.json`` (scheme and tags), ``metadata.json`` (provenance and scores) and
``weights.safetensors``. The word embedding is stored in float16 to keep artifacts small.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from tagserve.model.config import TaggerConfig
from tagserve.model.network import Tagger
from tagserve.model.schemes import allowed_transitions, check_scheme, split_tag
from tagserve.model.vocab import LabelSet, Vocabulary

CONFIG_FILE = "config.json"
VOCAB_FILE = "vocab.json"
LABELS_FILE = "labels.json"
METADATA_FILE = "metadata.json"
WEIGHTS_FILE = "weights.safetensors"
_HALF_PRECISION = {"word_embedding.weight"}
SHIPPED_MODELS_DIR = Path(__file__).parent / "artifacts"


class ArtifactError(Exception):
    """A model directory that cannot be loaded; the message names the file and the problem."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"model artifact {path}: {problem}")
        self.path = path
        self.problem = problem


@dataclass
class ModelBundle:
    """A network with everything needed to turn tokens into tags."""

    network: Tagger
    words: Vocabulary
    chars: Vocabulary
    labels: LabelSet
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def config(self) -> TaggerConfig:
        """The network's constructor arguments."""
        return self.network.config


def build_network(config: TaggerConfig, labels: LabelSet) -> Tagger:
    """A fresh network whose CRF forbids the transitions the scheme forbids."""
    if len(labels) != config.num_tags:
        raise ValueError(f"expected {config.num_tags} tags, got {len(labels)}")
    return Tagger(config, allowed_transitions(labels.labels, config.scheme))


def save(bundle: ModelBundle, directory: Path) -> None:
    """Write ``bundle`` to ``directory`` (created if needed), overwriting an earlier artifact."""
    directory.mkdir(parents=True, exist_ok=True)
    _write_json(directory / CONFIG_FILE, bundle.config.to_json())
    _write_json(
        directory / VOCAB_FILE, {"words": bundle.words.tokens, "chars": bundle.chars.tokens}
    )
    _write_json(
        directory / LABELS_FILE, {"scheme": bundle.config.scheme, "labels": bundle.labels.labels}
    )
    _write_json(directory / METADATA_FILE, bundle.metadata)
    tensors = {
        name: (value.half() if name in _HALF_PRECISION else value).detach().cpu().contiguous()
        for name, value in bundle.network.state_dict().items()
    }
    save_file(tensors, str(directory / WEIGHTS_FILE))
    # safetensors writes 0600; the service may run as another user than the trainer.
    for path in directory.iterdir():
        path.chmod(0o644)


def load(directory: Path, device: torch.device | str = "cpu") -> ModelBundle:
    """Load an artifact onto ``device`` in eval mode, or raise :class:`ArtifactError`."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ArtifactError(directory, "no such model directory")
    try:
        config = TaggerConfig.from_json(_read_json(directory / CONFIG_FILE))
    except (TypeError, ValueError) as error:
        raise ArtifactError(directory / CONFIG_FILE, str(error)) from None
    vocab = _read_json(directory / VOCAB_FILE)
    label_data = _read_json(directory / LABELS_FILE)
    metadata = _read_json(directory / METADATA_FILE)
    words, chars = _vocabularies(directory / VOCAB_FILE, vocab, config)
    labels = _labels(directory / LABELS_FILE, label_data, config)
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
    return ModelBundle(network, words, chars, labels, metadata)


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
    try:
        scheme = check_scheme(data["scheme"])
        tags = list(data["labels"])
        for tag in tags:
            prefix, _ = split_tag(tag)
            if scheme == "BIO" and prefix in {"E", "S"}:
                raise ValueError(f"tag {tag!r} is not a BIO tag")
        labels = LabelSet(tags)
    except (KeyError, TypeError, ValueError) as error:
        raise ArtifactError(path, f"invalid label set: {error}") from None
    if scheme != config.scheme:
        raise ArtifactError(path, f"scheme {scheme} differs from config.json's {config.scheme}")
    if len(labels) != config.num_tags:
        raise ArtifactError(
            path, f"config.json expects {config.num_tags} tags, file has {len(labels)}"
        )
    return labels


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArtifactError(path, "file is missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ArtifactError(path, f"not valid JSON ({error})") from None


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
