"""The default recipe: what ``tagserve train --train FILE`` uses when no config file is given.

One recipe for any label set, scaled by the size of the training data. It is the recipe of
``ner-fast`` (``configs/conll2003-fast.toml``: hidden 128, NAdam, weight averaging, case
augmentation) at CoNLL-2003's size; smaller data gets smaller batches (more updates per
epoch), more epochs and more patience, and no weight averaging (an average over ~1,000 steps
would lag tens of epochs behind on a few hundred sentences). The rules are plain data below so
docs/results.md ("Learning curve") measures exactly what users get.
"""

from __future__ import annotations

import math
from typing import Any

from tagserve.model.card import TokenizerStyle

# Above this many entity types BIO replaces BIOES: the CRF's cost grows with the square of the
# tag count (ATIS's 79 slot types: 159 tags in BIO, 317 in BIOES).
MAX_BIOES_TYPES = 20
# Sentences at and above which the large-data settings apply (CoNLL-2003 train: 14,041).
LARGE_DATA = 5_000


def batch_size_for(sentences: int) -> int:
    """32 on large data, 16 from 1,000 sentences, 8 below: at least ~30 updates an epoch."""
    if sentences >= LARGE_DATA:
        return 32
    return 16 if sentences >= 1_000 else 8


def epochs_for(sentences: int) -> int:
    """About 200,000 sentences seen in all, between 40 and 100 epochs."""
    return min(100, max(40, math.ceil(200_000 / max(sentences, 1))))


def default_sections(
    sentences: int,
    entity_types: int,
    has_intents: bool,
    tokenizer: TokenizerStyle = "conll",
    lowercase: bool = False,
) -> dict[str, Any]:
    """The ``[model]`` and ``[training]`` tables of the default recipe for this data, as raw
    config values (``--set`` overrides apply on top, then the whole config is validated)."""
    large = sentences >= LARGE_DATA
    # Case augmentation teaches case-robustness to a model that sees case; a lower-casing
    # model never does.
    augment = not lowercase
    return {
        "model": {
            "scheme": "BIOES" if entity_types <= MAX_BIOES_TYPES else "BIO",
            "char_encoder": "cnn",
            "char_channels": 50,
            "hidden_size": 128,
            "dropout": 0.5,
            "glove_rows": 150_000,
            "intents": has_intents,
        },
        "training": {
            "epochs": epochs_for(sentences),
            "batch_size": batch_size_for(sentences),
            "optimizer": "nadam",
            "lr": 0.002,
            "momentum": 0.0,
            "lr_decay": 0.03,
            "clip_norm": 5.0,
            "weight_average": 0.999 if large else 0.0,
            "patience": 10 if large else 15,
            "max_minutes": 90,
            "select_by": "frame_accuracy" if has_intents else "f1",
            "case_augmentation": {"lower": 0.35, "upper": 0.15}
            if augment
            else {"lower": 0.0, "upper": 0.0},
        },
        "artifact": {"tokenizer": tokenizer, "lowercase": lowercase},
    }
