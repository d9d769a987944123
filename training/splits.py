"""The data splits a training run reads: train, dev (a file, or a seeded share of train) and
test, in any format the readers know, as the served model will see them."""

from __future__ import annotations

import random
import sys
from dataclasses import dataclass
from pathlib import Path

from tagserve.training.config import ArtifactConfig, DataConfig, TrainConfig
from tagserve.training.readers import Example, read_dataset_with_report


@dataclass
class Splits:
    """The examples of each data split (test optional)."""

    train: list[Example]
    dev: list[Example]
    test: list[Example] | None


def data_path(root: Path, value: str) -> Path:
    """A config path: absolute as written, else under the data directory ``root``."""
    return (root / value).absolute() if not Path(value).is_absolute() else Path(value)


def read_splits(config: TrainConfig, root: Path, train: list[Example] | None = None) -> Splits:
    """Read train (unless given, already read), dev and test; with ``data.dev_split``, dev is
    that share of train, drawn with ``training.seed``."""
    data = config.data

    def read(value: str) -> list[Example]:
        return read_examples(data_path(root, value), data, config.artifact)

    if train is None:
        train = read(data.train)
    if data.dev_split is not None:
        train, dev = split_dev(train, data.dev_split, config.training.seed, data.train)
        print(
            f"dev split: {len(dev)} of {len(train) + len(dev)} training sentences held out as "
            f"dev (dev_split {data.dev_split}, seed {config.training.seed}), {len(train)} train",
            file=sys.stderr,
        )
    else:
        dev = read(str(data.dev))
    return Splits(train, dev, read(data.test) if data.test else None)


def dev_size(sentences: int, share: float) -> int:
    """How many of ``sentences`` a ``share`` holds out (rounded)."""
    return round(sentences * share)


def split_dev(
    examples: list[Example], share: float, seed: int, source: str = "train"
) -> tuple[list[Example], list[Example]]:
    """(train, dev): ``share`` of ``examples`` drawn at random with ``seed``, each part in
    file order; a ``ValueError`` when either part would be empty."""
    held = dev_size(len(examples), share)
    if held < 1 or held >= len(examples):
        raise ValueError(
            f"--dev-split {share} of {len(examples)} training sentences in {source} leaves "
            f"{held} for dev and {len(examples) - held} for training: each needs at least 1"
        )
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    chosen = set(order[:held])
    train = [e for i, e in enumerate(examples) if i not in chosen]
    dev = [e for i, e in enumerate(examples) if i in chosen]
    return train, dev


def read_examples(path: Path, data: DataConfig, artifact: ArtifactConfig) -> list[Example]:
    """One split in ``data.format``; an annotation export is tokenized as the served model
    tokenizes (``artifact.tokenizer``) and its readers' report printed. Tokens are
    lower-cased for a lower-casing model, as the service lower-cases its input."""
    from tagserve.training.annotations import AnnotationOptions

    options = AnnotationOptions(
        tokenizer=artifact.tokenizer,
        misaligned=data.misaligned,
        overlaps=data.overlaps,
        offsets=data.offsets,
    )
    examples, report = read_dataset_with_report(path, data.format, data.strict, annotations=options)
    if report is not None:
        for line in report.lines():
            print(line, file=sys.stderr)
    if artifact.lowercase:
        examples = [Example([t.lower() for t in e.tokens], e.tags, e.intent) for e in examples]
    return examples
