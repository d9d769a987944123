"""The training loop: build vocabularies, initialise from GloVe, train, early-stop on dev F1."""

from __future__ import annotations

import json
import logging
import math
import platform
import random
import sys
import time
from collections import Counter
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from tagserve.model.artifact import ModelBundle, build_network, save
from tagserve.model.config import TaggerConfig
from tagserve.model.encoding import encode
from tagserve.model.network import Tagger
from tagserve.model.predictor import Predictor
from tagserve.model.schemes import Scheme, convert, entity_types, labels_for
from tagserve.model.vocab import PAD, UNK, LabelSet, Vocabulary, word_keys
from tagserve.training.config import TrainConfig, data_dir
from tagserve.training.evaluate import evaluate
from tagserve.training.glove import load_glove
from tagserve.training.readers import Example, read_dataset

log = logging.getLogger(__name__)


def set_seed(seed: int) -> None:
    """Seed every generator training touches."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_vocabularies(
    examples: list[Example], glove_words: list[str]
) -> tuple[Vocabulary, Vocabulary, int]:
    """Words: training words (lower-cased) then GloVe's most frequent; characters: training chars.

    Returns both vocabularies and the number of leading word rows that training updates; the
    GloVe-only rows after them stay frozen, so words unseen in training still get their vector.
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
    """One row per vocabulary word: its GloVe vector, or a small random one; and the hit count."""
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


def with_frozen_rows(network: Tagger, frozen: torch.Tensor, labels: LabelSet) -> Tagger:
    """A copy of ``network`` whose word table is its trained rows followed by ``frozen`` rows."""
    config = replace(network.config, num_words=network.config.num_words + frozen.size(0))
    merged = build_network(config, labels).to(frozen.device)
    state = network.state_dict()
    state["word_embedding.weight"] = torch.cat([state["word_embedding.weight"], frozen])
    merged.load_state_dict(state)
    return merged.eval()


def make_batches(
    examples: list[tuple[list[str], list[int]]], batch_size: int, rng: random.Random
) -> list[list[tuple[list[str], list[int]]]]:
    """Shuffle, sort within pools of 50 batches by length (less padding), shuffle the batches."""
    shuffled = examples[:]
    rng.shuffle(shuffled)
    pool = batch_size * 50
    batches: list[list[tuple[list[str], list[int]]]] = []
    for start in range(0, len(shuffled), pool):
        chunk = sorted(shuffled[start : start + pool], key=lambda e: len(e[0]))
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


def train(
    config: TrainConfig,
    output: Path,
    device: str = "cpu",
    data_root: Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train per ``config``, write the best-on-dev artifact to ``output`` and return its metrics."""
    started = time.monotonic()
    set_seed(config.training.seed)
    root = data_dir(data_root)
    section = config.model
    scheme: Scheme = section.scheme
    fmt = config.data.format
    train_set = read_dataset(root / config.data.train, fmt, config.data.strict)
    dev_set = read_dataset(root / config.data.dev, fmt, config.data.strict)
    test_set = (
        read_dataset(root / config.data.test, fmt, config.data.strict) if config.data.test else None
    )

    glove_words, vectors = (
        load_glove(section.glove_rows) if section.pretrained else ([], np.zeros((0, 50)))
    )
    words, chars, trainable_rows = build_vocabularies(train_set, glove_words)
    types = sorted(entity_types([t for e in train_set for t in e.tags]))
    labels = LabelSet(labels_for(types, scheme))
    tagger_config = TaggerConfig(
        num_words=trainable_rows,
        num_chars=len(chars),
        num_tags=len(labels),
        **{k: v for k, v in asdict(section).items() if k not in {"glove_rows", "pretrained"}},
    )
    network = build_network(tagger_config, labels).to(device)
    if section.pretrained and section.word_dim != vectors.shape[1]:
        raise ValueError(
            f"word_dim must be {vectors.shape[1]} to use GloVe, got {section.word_dim}"
        )
    matrix, found = pretrained_matrix(words, glove_words, vectors, section.word_dim)
    log.info("GloVe vectors for %d of %d words", found, len(words))
    with torch.no_grad():
        network.word_embedding.weight.copy_(matrix[:trainable_rows])
    frozen_rows = matrix[trainable_rows:].to(device)

    def encode_tags(example: Example) -> list[int]:
        return [labels.index(t) for t in convert(example.tags, "BIO", scheme)]

    train_data = [(e.tokens, encode_tags(e)) for e in train_set]
    opt = config.training
    optimizer: torch.optim.Optimizer
    if opt.optimizer == "sgd":
        optimizer = torch.optim.SGD(
            network.parameters(), lr=opt.lr, momentum=opt.momentum, weight_decay=opt.weight_decay
        )
    elif opt.optimizer == "nadam":
        optimizer = torch.optim.NAdam(
            network.parameters(), lr=opt.lr, weight_decay=opt.weight_decay
        )
    else:
        optimizer = torch.optim.Adam(network.parameters(), lr=opt.lr, weight_decay=opt.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda epoch: 1.0 / (1.0 + opt.lr_decay * epoch)
    )
    rng = random.Random(opt.seed)
    metadata: dict[str, Any] = {
        "name": config.artifact.name,
        "version": config.artifact.version,
        "dataset": config.artifact.dataset,
        "description": config.artifact.description,
        "scheme": scheme,
        "entity_types": types,
        "tokenizer": {"style": config.artifact.tokenizer, "lowercase": config.artifact.lowercase},
        "training": {"config": _plain(config), "device": device, "machine": _machine()},
    }
    best_f1, best_epoch, history = -1.0, 0, []
    for epoch in range(1, opt.epochs + 1):
        network.train()
        epoch_start = time.monotonic()
        total_loss = 0.0
        batches = make_batches(train_data, opt.batch_size, rng)
        for batch in tqdm(
            batches, desc=f"epoch {epoch}", disable=not progress, leave=False, file=sys.stderr
        ):
            tokens = [b[0] for b in batch]
            encoded = encode(tokens, words, chars, tagger_config.max_word_chars)
            if opt.word_dropout > 0:
                # Teach the <unk> row: some known words are hidden as if unseen.
                dropped = torch.rand(encoded.words.shape) < opt.word_dropout
                encoded.words[dropped & (encoded.words > 1)] = 1
            encoded = encoded.to(device)
            width = encoded.words.size(1)
            gold = torch.tensor([t + [0] * (width - len(t)) for _, t in batch], device=device)
            loss = network.loss(encoded, gold)
            optimizer.zero_grad()
            loss.backward()
            if opt.clip_norm > 0:
                torch.nn.utils.clip_grad_norm_(network.parameters(), opt.clip_norm)
            optimizer.step()
            total_loss += loss.item() * len(batch)
        scheduler.step()
        network.eval()
        bundle = ModelBundle(
            with_frozen_rows(network, frozen_rows, labels), words, chars, labels, metadata
        )
        dev_metrics = evaluate(Predictor(bundle, batch_size=256), dev_set)
        record = {
            "epoch": epoch,
            "loss": round(total_loss / len(train_data), 4),
            "dev_f1": round(dev_metrics["f1"], 2),
            "lr": round(optimizer.param_groups[0]["lr"], 6),
            "epoch_seconds": round(time.monotonic() - epoch_start, 1),
            "elapsed_minutes": round((time.monotonic() - started) / 60, 1),
        }
        history.append(record)
        print(json.dumps(record), flush=True)
        if dev_metrics["f1"] > best_f1:
            best_f1, best_epoch = dev_metrics["f1"], epoch
            metadata["dev_metrics"] = _rounded(dev_metrics)
            metadata["best_epoch"] = epoch
            save(bundle, output)
        elif epoch - best_epoch >= opt.patience:
            print(json.dumps({"early_stop": epoch, "best_epoch": best_epoch}), flush=True)
            break
        if opt.max_minutes and (time.monotonic() - started) / 60 > opt.max_minutes:
            print(json.dumps({"time_limit": epoch, "best_epoch": best_epoch}), flush=True)
            break
    from tagserve.model.artifact import load

    best = load(output, device)
    result: dict[str, Any] = {
        "best_epoch": best_epoch,
        "dev": _rounded(evaluate(Predictor(best), dev_set)),
    }
    if test_set is not None:
        result["test"] = _rounded(evaluate(Predictor(best), test_set))
    seconds = time.monotonic() - started
    best.metadata.update(
        {
            "dev_metrics": result["dev"],
            "test_metrics": result.get("test"),
            "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "training_minutes": round(seconds / 60, 1),
            "history": history,
        }
    )
    save(best, output)
    result["training_minutes"] = round(seconds / 60, 1)
    result["history"] = history
    return result


def _rounded(metrics: dict[str, Any]) -> dict[str, Any]:
    def walk(value: Any) -> Any:
        if isinstance(value, float):
            return round(value, 2)
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        return value

    result: dict[str, Any] = walk(metrics)
    return result


def _plain(config: TrainConfig) -> dict[str, Any]:
    return asdict(config)


def _machine() -> dict[str, Any]:
    import os

    return {
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }
