"""The manifest: which model worker serves each model name now, written by ``tagserve serve``
into its private run folder and read by every HTTP worker (at start, and whenever the
generation it publishes moves on, after a reload).

One JSON file, replaced whole by a rename, so a reader sees the old manifest or the new one,
never a mix. It carries each model's card, labels and intents as the server checked them,
so that an HTTP worker never reads the models folder itself (the folder may be changing
under it), and each worker's socket key: the file is mode 0600 in a folder only this user
can enter, as the sockets are.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from tagserve.model.artifact_files import ArtifactInfo
from tagserve.model.card import ModelCard
from tagserve.model.config import TaggerConfig
from tagserve.model.vocab import LabelSet
from tagserve.service.inference.protocol import WorkerAddress

MANIFEST_FILE = "models.json"


@dataclass(frozen=True)
class ManifestModel:
    """One served model: its worker's address, the directory it was loaded from, its card."""

    address: WorkerAddress
    path: str
    info: ArtifactInfo


@dataclass(frozen=True)
class Manifest:
    """The models of one generation (0 at start-up, one more after each reload)."""

    generation: int
    models: dict[str, ManifestModel]


def write_manifest(path: Path, manifest: Manifest) -> None:
    """Replace the manifest at ``path`` in one step (write a temporary file, then rename)."""
    data = {
        "generation": manifest.generation,
        "models": {
            name: {
                "socket": model.address.socket_path,
                "key": model.address.key.hex(),
                "path": model.path,
                "info": _info_json(model.info),
            }
            for name, model in manifest.models.items()
        },
    }
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(orjson.dumps(data))
    os.replace(temporary, path)


def read_manifest(path: Path) -> Manifest:
    """The manifest at ``path`` (written by :func:`write_manifest`)."""
    data = orjson.loads(Path(path).read_bytes())
    models = {
        name: ManifestModel(
            WorkerAddress(name, entry["socket"], bytes.fromhex(entry["key"])),
            entry["path"],
            _info_from_json(entry["info"]),
        )
        for name, entry in data["models"].items()
    }
    return Manifest(int(data["generation"]), models)


def _info_json(info: ArtifactInfo) -> dict[str, Any]:
    return {
        "card": info.card.model_dump(mode="json"),
        "config": info.config.model_dump(mode="json"),
        "labels": list(info.labels.labels),
        "scheme": info.labels.scheme,
        "intents": list(info.intents),
    }


def _info_from_json(data: dict[str, Any]) -> ArtifactInfo:
    return ArtifactInfo(
        labels=LabelSet(list(data["labels"]), data["scheme"]),
        card=ModelCard.model_validate(data["card"]),
        config=TaggerConfig.model_validate(data["config"]),
        intents=list(data["intents"]),
    )
