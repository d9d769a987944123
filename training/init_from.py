"""Start training from a trained artifact (``--init ner`` or ``--init DIR``): its weights,
vocabularies and architecture, with the output layer fitted to the new data's labels.

What a small data set cannot learn well (word and character representations, the encoder)
is carried over; what is specific to the new label set is fitted:

- words: the new data's words first (the rows training updates), then the init model's
  other words (frozen, as GloVe rows are in a fresh model); a word the init model knows keeps
  its row, a new one starts from the pretrained vectors where they have it, else at random;
- characters: the init model's table, then characters new in the data (fresh rows);
- labels: the data's own; an emission row (and CRF transition, start and end scores) for a
  label the init model shares is carried over, labels the data adds start fresh, and init
  labels absent from the data are dropped (all three counted in the log);
- intents: the head is carried over where both have one (rows matched by intent name),
  added fresh when only the data has intents, dropped when only the init model has one.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from tagserve.model.artifact import ArtifactError, ModelBundle, build_network, load, resolve
from tagserve.model.config import Architecture, TaggerConfig
from tagserve.model.network import Tagger
from tagserve.model.schemes import split_tag
from tagserve.model.vocab import LabelSet, Vocabulary, word_keys
from tagserve.training.readers import Example

log = logging.getLogger(__name__)
# Architecture fields the init model fixes: every one but dropout, which shapes no weight and
# may be chosen afresh for the new data.
SHAPE_KEYS = tuple(name for name in Architecture.model_fields if name != "dropout")
# Weights with one row (or value) per output tag.
_PER_TAG = {"emission.weight", "emission.bias", "crf.start_transitions", "crf.end_transitions"}


def load_init(source: str, device: str = "cpu") -> ModelBundle:
    """The init artifact (a shipped model name or a directory), or a ``ValueError``."""
    try:
        return load(resolve(source), device)
    except ArtifactError as error:
        raise ValueError(f"model.init: {error}") from None


def architecture_conflicts(model: dict[str, Any], init: TaggerConfig) -> dict[str, Any]:
    """The shape keys in ``model`` (raw config values) whose value differs from ``init``'s."""
    return {k: model[k] for k in SHAPE_KEYS if k in model and model[k] != getattr(init, k)}


def check_architecture(section: Architecture, init: TaggerConfig, source: str) -> None:
    """A ``ValueError`` naming the first shape key on which ``section`` and ``init`` differ."""
    for key in SHAPE_KEYS:
        if getattr(section, key) != getattr(init, key):
            raise ValueError(
                f"model.{key} = {getattr(section, key)!r} conflicts with the init model "
                f"{source} ({key} = {getattr(init, key)!r}): the architecture comes from it"
            )


@dataclass
class Started:
    """A network initialised from the init model, its vocabularies and its frozen word rows."""

    network: Tagger
    words: Vocabulary
    chars: Vocabulary
    frozen_rows: torch.Tensor
    # The init model's source, name and version, for the card (None: a fresh start).
    init: dict[str, str] | None = None


def start_from(
    init: ModelBundle,
    train_set: list[Example],
    labels: LabelSet,
    intents: list[str],
    dropout: float,
    vectors: tuple[list[str], np.ndarray],
) -> Started:
    """The network for ``labels`` and ``intents`` with every weight the init model shares."""
    words, trainable = _words(init.words, train_set)
    chars = Vocabulary.from_tokens(init.chars.tokens)
    counts = Counter(c for e in train_set for t in e.tokens for c in t)
    for char, _ in counts.most_common():
        chars.add(char)
    config = TaggerConfig(
        num_words=trainable,
        num_chars=len(chars),
        num_tags=len(labels),
        num_intents=len(intents),
        **{**init.config.architecture(), "dropout": dropout},
    )
    network = build_network(config, labels)
    matrix, fresh = _word_matrix(init, words, vectors)
    old = {name: value.detach() for name, value in init.network.state_dict().items()}
    tag_rows = _row_map(labels.labels, init.labels.labels)
    intent_rows = _row_map(intents, init.intents)
    with torch.no_grad():
        state = network.state_dict()
        for name, value in state.items():
            if name == "word_embedding.weight":
                value.copy_(matrix[:trainable])
            elif name not in old:
                continue  # e.g. an intent head the init model lacks
            elif name == "char_encoder.embedding.weight":
                value[: old[name].size(0)] = old[name]
            elif name in _PER_TAG:
                _copy_rows(value, old[name], tag_rows)
            elif name == "crf.transitions":
                for new_i, old_i in tag_rows.items():
                    for new_j, old_j in tag_rows.items():
                        value[new_i, new_j] = old[name][old_i, old_j]
            elif name.startswith("intent_output."):
                _copy_rows(value, old[name], intent_rows)
            elif value.shape == old[name].shape:
                value.copy_(old[name])
            else:
                raise ValueError(f"init model: {name} has shape {tuple(old[name].shape)}")
        network.load_state_dict(state)
    _log_start(init, labels, tag_rows, intents, intent_rows, (len(words), trainable, fresh))
    log.info(
        "init: %d chars, %d of them new to the init model", len(chars), len(chars) - len(init.chars)
    )
    return Started(network, words, chars, matrix[trainable:])


def _words(init_words: Vocabulary, train_set: list[Example]) -> tuple[Vocabulary, int]:
    """Training words first (updated by training), then the init model's other words."""
    words = Vocabulary()
    for example in train_set:
        for token in example.tokens:
            words.add(word_keys(token)[0])
    trainable = len(words)
    for word in init_words.tokens[2:]:
        words.add(word)
    return words, trainable


def _word_matrix(
    init: ModelBundle, words: Vocabulary, vectors: tuple[list[str], np.ndarray]
) -> tuple[torch.Tensor, int]:
    """Each word's init row, else its pretrained vector, else a small random one; and how many
    rows are not the init model's."""
    table = init.network.word_embedding.weight.detach().float()
    dim = table.size(1)
    vector_words, vector_matrix = vectors
    if vector_words and vector_matrix.shape[1] != dim:
        raise ValueError(
            f"the pretrained vectors are {vector_matrix.shape[1]}-d but the init model's "
            f"word_dim is {dim}: give vectors of that width or --vectors none"
        )
    vector_index = {w: i for i, w in enumerate(vector_words)}
    scale = math.sqrt(3.0 / dim)
    matrix = torch.empty(len(words), dim).uniform_(-scale, scale)
    fresh = 0
    for i, word in enumerate(words.tokens):
        if word in init.words:
            matrix[i] = table[init.words.index(word)]
            continue
        fresh += 1
        row = vector_index.get(word)
        if row is not None:
            matrix[i] = torch.from_numpy(vector_matrix[row])
    return matrix, fresh


def _row_map(new: list[str], old: list[str]) -> dict[int, int]:
    """New index → old index of every entry both lists hold."""
    position = {name: i for i, name in enumerate(old)}
    return {i: position[name] for i, name in enumerate(new) if name in position}


def _copy_rows(target: torch.Tensor, source: torch.Tensor, rows: dict[int, int]) -> None:
    for new_i, old_i in rows.items():
        target[new_i] = source[old_i]


def _log_start(
    init: ModelBundle,
    labels: LabelSet,
    tag_rows: dict[int, int],
    intents: list[str],
    intent_rows: dict[int, int],
    word_counts: tuple[int, int, int],
) -> None:
    name = f"{init.card.name} {init.card.version}"
    kept = {init.labels.labels[i] for i in tag_rows.values()}
    dropped = [t for t in init.labels.labels if t not in kept]
    added = [t for i, t in enumerate(labels.labels) if i not in tag_rows]
    log.info(
        "init from %s: %d of the data's %d labels carried over, %d new (types: %s), "
        "%d of the init model's dropped (types not in the data: %s)",
        name,
        len(tag_rows),
        len(labels),
        len(added),
        ", ".join(_types(added)) or "none",
        len(dropped),
        ", ".join(_types(dropped)) or "none",
    )
    if intents:
        log.info(
            "init from %s: intent head %s (%d of %d intents carried over)",
            name,
            "carried over" if init.intents else "added fresh",
            len(intent_rows),
            len(intents),
        )
    elif init.intents:
        log.info("init from %s: its intent head dropped (the data has no intents)", name)
    log.info(
        "init from %s: %d words (%d updated by training, %d new to the init model)",
        name,
        *word_counts,
    )


def _types(tags: list[str], shown: int = 8) -> list[str]:
    """The entity types of ``tags``, sorted: the first ``shown``, then how many more."""
    types = sorted({split_tag(tag)[1] for tag in tags if tag != "O"})
    more = [f"and {len(types) - shown} more"] if len(types) > shown else []
    return types[:shown] + more
