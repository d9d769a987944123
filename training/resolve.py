"""``tagserve train`` flags → one complete :class:`TrainConfig`.

The base is a config file, or without one the default recipe (:mod:`training.recipe`) for
the training data's size, entity types and intents. The data and artifact flags (``--train``,
``--dev``, ``--format``, ``--tokenizer``, ``--vectors``, ``--init``, ...) then replace the
base's values, and ``--set`` overrides come last. Paths given on the command line are read
from the current directory; every path in the result is absolute, so the config written
beside the artifact repeats the run from anywhere.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tagserve.model.artifact import ArtifactError, read_info, resolve
from tagserve.model.schemes import entity_types
from tagserve.training.config import (
    ArtifactConfig,
    DataConfig,
    TrainConfig,
    apply_overrides,
    parse_override,
    read_raw,
    validate,
)
from tagserve.training.init_from import SHAPE_KEYS, architecture_conflicts
from tagserve.training.readers import Example
from tagserve.training.recipe import default_sections
from tagserve.training.splits import data_path, dev_size, read_examples
from tagserve.training.vectors import vectors_dim

log = logging.getLogger(__name__)
COMMAND_LINE = "command line"


@dataclass(frozen=True)
class TrainFlags:
    """What ``tagserve train`` was told besides the config file and ``--set``."""

    train: Path | None = None
    dev: Path | None = None
    dev_split: float | None = None
    test: Path | None = None
    format: str | None = None
    tokenizer: str | None = None
    lowercase: bool = False
    name: str | None = None
    version: str | None = None
    misaligned: str | None = None
    overlaps: str | None = None
    offsets: str | None = None
    vectors: str | None = None
    init: str | None = None


@dataclass
class Resolved:
    """The config to train, and the training examples when resolving had to read them."""

    config: TrainConfig
    train_set: list[Example] | None = None


def resolve_config(
    config_file: Path | None, flags: TrainFlags, overrides: list[str], root: Path
) -> Resolved:
    """The complete config for these flags, or a ``ValueError`` (a data problem: a
    ``DataError``) naming the flag, file or key at fault."""
    if flags.dev is not None and flags.dev_split is not None:
        raise ValueError("give --dev or --dev-split, not both")
    if config_file is None and flags.train is None:
        raise ValueError("give a config file or --train FILE (with --dev FILE or --dev-split)")
    source = str(config_file) if config_file is not None else COMMAND_LINE
    given = read_raw(config_file) if config_file is not None else {}
    for name, table in given.items():
        if not isinstance(table, dict):
            raise ValueError(f"{source}: [{name}] must be a table, got {table!r}")
    _apply_flags(given, flags)
    apply_overrides(given, overrides, source)
    if "data" not in given:
        raise ValueError(f"{source}: expected a [data] section with train and dev paths")
    train_set = None
    if config_file is None:
        if not {"dev", "dev_split"} & given["data"].keys():
            raise ValueError("--train needs --dev FILE or --dev-split SHARE (e.g. 0.1)")
        # What was given is checked before any data is read; its data and artifact tables
        # say how to read the data the recipe is made for.
        tables = validate(given, source)
        data, artifact = tables.data, tables.artifact
        train_set = read_examples(data_path(root, data.train), data, artifact)
        raw = _merge(_recipe(train_set, data, artifact), given)
    else:
        raw = given
    _absolute_paths(raw, root)
    explicit_model = {keys[1] for keys, _ in map(parse_override, overrides) if keys[0] == "model"}
    _adopt_init(raw, explicit_model, source)
    _vectors_width(raw, given.get("model", {}), source, root)
    return Resolved(validate(raw, source), train_set)


def _apply_flags(raw: dict[str, Any], flags: TrainFlags) -> None:
    """The data, artifact and model flags over the config file's values (paths absolute)."""
    data: dict[str, Any] = {
        key: str(Path(getattr(flags, key)).absolute())
        for key in ("train", "dev", "test")
        if getattr(flags, key) is not None
    }
    data.update(
        (key, getattr(flags, key))
        for key in ("dev_split", "format", "misaligned", "overlaps", "offsets")
        if getattr(flags, key) is not None
    )
    if data:
        table = raw.setdefault("data", {})
        table.pop("dev_split" if "dev" in data else "dev" if "dev_split" in data else "", None)
        table.update(data)
    artifact = {
        key: getattr(flags, key)
        for key in ("tokenizer", "name", "version")
        if getattr(flags, key) is not None
    }
    if flags.lowercase:
        artifact["lowercase"] = True
    if artifact:
        raw.setdefault("artifact", {}).update(artifact)
    model: dict[str, Any] = {}
    if flags.vectors is not None:
        none = flags.vectors.lower() == "none"
        model["pretrained"] = not none
        model["vectors"] = None if none else str(Path(flags.vectors).absolute())
    if flags.init is not None:
        init = Path(flags.init)
        model["init"] = str(init.absolute()) if init.is_dir() else flags.init
    if model:
        table = raw.setdefault("model", {})
        table.update(model)
        if table.get("vectors", "") is None:
            del table["vectors"]


def _recipe(train_set: list[Example], data: DataConfig, artifact: ArtifactConfig) -> dict:
    """The default recipe's tables for this training data (after any dev split)."""
    sentences = len(train_set)
    if data.dev_split is not None:
        sentences -= dev_size(sentences, data.dev_split)
    types = entity_types([t for e in train_set for t in e.tags])
    has_intents = all(e.intent for e in train_set)
    with_intent = sum(bool(e.intent) for e in train_set)
    if 0 < with_intent < len(train_set):
        log.warning(
            "%d of %d training sentences have an intent: no intent head (it needs one on "
            "every sentence)",
            with_intent,
            len(train_set),
        )
    sections = default_sections(
        max(sentences, 1), len(types), has_intents, artifact.tokenizer, artifact.lowercase
    )
    log.info(
        "default recipe for %d training sentences, %d entity types%s",
        sentences,
        len(types),
        ", intents" if has_intents else "",
    )
    return sections


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``top``'s values over it, table by table."""
    merged = copy.deepcopy(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _absolute_paths(raw: dict[str, Any], root: Path) -> None:
    """Config paths (relative to the data directory) as absolute paths."""
    data = raw.get("data", {})
    for key in ("train", "dev", "test"):
        if isinstance(data.get(key), str):
            data[key] = str(data_path(root, data[key]))
    model = raw.get("model", {})
    if isinstance(model.get("vectors"), str) and model.get("pretrained", True):
        model["vectors"] = str(data_path(root, model["vectors"]))


def _adopt_init(raw: dict[str, Any], explicit: set[str], source: str) -> None:
    """With ``model.init``, the architecture is the init model's: the base's values are
    replaced (logged), a ``--set`` that conflicts is an error naming the key."""
    model = raw.get("model", {})
    init = model.get("init")
    if not isinstance(init, str) or not init:
        return
    try:
        config = read_info(resolve(init)).config
    except ArtifactError as error:
        raise ValueError(f"{source}: [model] init: {error}") from None
    conflicts = architecture_conflicts(model, config)
    for key, value in conflicts.items():
        if key in explicit:
            raise ValueError(
                f"--set model.{key}={value} conflicts with the init model {init} "
                f"({key} = {getattr(config, key)!r}): the architecture comes from it"
            )
    if conflicts:
        log.info(
            "architecture from the init model %s: %s",
            init,
            ", ".join(f"{k} {v!r} -> {getattr(config, k)!r}" for k, v in conflicts.items()),
        )
    for key in SHAPE_KEYS:
        model[key] = getattr(config, key)


def _vectors_width(
    raw: dict[str, Any], given_model: dict[str, Any], source: str, root: Path
) -> None:
    """``model.word_dim`` from the vectors file; a different one given is an error."""
    model = raw.get("model", {})
    vectors = model.get("vectors")
    if not isinstance(vectors, str) or not model.get("pretrained", True):
        return
    width = vectors_dim(data_path(root, vectors))
    stated = model.get("word_dim") if model.get("init") else given_model.get("word_dim")
    if stated is not None and stated != width:
        whose = "the init model's word_dim" if model.get("init") else "model.word_dim"
        raise ValueError(
            f"{source}: {whose} is {stated} but the vectors in {vectors} are {width}-d "
            "(word_dim comes from the vectors file)"
        )
    model["word_dim"] = width
