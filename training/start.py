"""Where a network's weights start: pretrained word vectors and random weights elsewhere, or a
trained model (``model.init``, :mod:`~tagserve.training.init_from`) plus the vectors for
the words it lacks."""

from __future__ import annotations

import logging
import math
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from tagserve.model.artifact import build_network
from tagserve.model.config import TaggerConfig
from tagserve.model.vocab import PAD, UNK, LabelSet, Vocabulary, word_keys
from tagserve.training.config import ModelSection
from tagserve.training.init_from import Started, check_architecture, load_init, start_from
from tagserve.training.readers import Example
from tagserve.training.splits import data_path
from tagserve.training.vectors import load_vectors

log = logging.getLogger(__name__)


def initial_network(
    section: ModelSection,
    train_set: list[Example],
    labels: LabelSet,
    intents: list[str],
    root: Path,
) -> Started:
    """The network to train for ``labels`` and ``intents``, its vocabularies and frozen rows
    (on the CPU); ``Started.init`` names the init model, if any."""
    vectors = pretrained_vectors(section, root)
    if section.init:
        init = load_init(section.init)
        check_architecture(section, init.config, section.init)
        started = start_from(init, train_set, labels, intents, section.dropout, vectors)
        started.init = {
            "source": section.init,
            "name": init.card.name,
            "version": init.card.version,
        }
        return started
    glove_words, matrix_source = vectors
    words, chars, trainable_rows = build_vocabularies(train_set, glove_words)
    config = TaggerConfig(
        num_words=trainable_rows,
        num_chars=len(chars),
        num_tags=len(labels),
        num_intents=len(intents),
        **section.architecture(),
    )
    network = build_network(config, labels)
    matrix, found = pretrained_matrix(words, glove_words, matrix_source, section.word_dim)
    log.info("pretrained vectors for %d of %d words", found, len(words))
    with torch.no_grad():
        network.word_embedding.weight.copy_(matrix[:trainable_rows])
    return Started(network, words, chars, matrix[trainable_rows:])


def pretrained_vectors(section: ModelSection, root: Path) -> tuple[list[str], np.ndarray]:
    """The configured vectors (``model.vectors``, else GloVe 6B; none without
    ``model.pretrained``), checked against ``model.word_dim``."""
    if not section.pretrained:
        return [], np.zeros((0, section.word_dim), dtype=np.float32)
    path = data_path(root, section.vectors) if section.vectors else None
    words, vectors = load_vectors(path, section.glove_rows)
    if section.word_dim != vectors.shape[1]:
        raise ValueError(
            f"model.word_dim = {section.word_dim} but the vectors in "
            f"{path or 'the GloVe 6B package'} are {vectors.shape[1]}-d"
        )
    return words, vectors


def build_vocabularies(
    examples: list[Example], glove_words: list[str]
) -> tuple[Vocabulary, Vocabulary, int]:
    """Words: training words (lower-cased) then the vectors' most frequent; characters:
    training chars.

    Returns both vocabularies and the number of leading word rows that training updates; the
    vectors-only rows after them stay frozen, so words unseen in training still get their
    vector.
    """
    words = Vocabulary.from_tokens([PAD, UNK])
    for example in examples:
        for token in example.tokens:
            words.add(word_keys(token)[0])
    trainable_rows = len(words)
    for word in glove_words:
        words.add(word)
    chars = Vocabulary.from_tokens([PAD, UNK])
    counts = Counter(c for e in examples for t in e.tokens for c in t)
    for char, _ in counts.most_common():
        chars.add(char)
    return words, chars, trainable_rows


def pretrained_matrix(
    words: Vocabulary, glove_words: list[str], vectors: np.ndarray, dim: int
) -> tuple[torch.Tensor, int]:
    """One row per vocabulary word: its pretrained vector, or a small random one; and the hit
    count."""
    glove_index = {w: i for i, w in enumerate(glove_words)}
    scale = math.sqrt(3.0 / dim)
    matrix = torch.empty(len(words), dim).uniform_(-scale, scale)
    matrix[0].zero_()
    found = 0
    for i, word in enumerate(words.tokens[2:], start=2):
        row = glove_index.get(word)
        if row is not None:
            matrix[i] = torch.from_numpy(vectors[row])
            found += 1
    return matrix, found
