"""The training loop: build vocabularies, initialise from pretrained vectors (or from a trained
model, :mod:`~tagserve.training.init_from`), train, early-stop on dev F1."""

from __future__ import annotations

import json
import logging
import platform
import random
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch.optim.swa_utils import AveragedModel
from tqdm import tqdm

from tagserve.model.artifact import ModelBundle, build_network, load, save
from tagserve.model.card import ModelCard, TokenizerSpec
from tagserve.model.encoding import encode
from tagserve.model.network import Tagger
from tagserve.model.predictor import Predictor
from tagserve.model.schemes import convert, entity_types, labels_for
from tagserve.model.vocab import LabelSet, Vocabulary
from tagserve.training.config import (
    CaseAugmentation,
    OptimConfig,
    TrainConfig,
    data_dir,
    save_config,
)
from tagserve.training.distillation import Teacher, load_teacher
from tagserve.training.evaluate import evaluate, recase_tokens
from tagserve.training.optim import averaged_network, make_optimizer, weight_average
from tagserve.training.readers import Example
from tagserve.training.splits import Splits, read_splits
from tagserve.training.start import initial_network

# Written beside the artifact: the whole resolved config, so `tagserve train FILE` repeats it.
RESOLVED_CONFIG = "train-config.yaml"

log = logging.getLogger(__name__)
_Item = TypeVar("_Item", bound=tuple[Any, ...])


def set_seed(seed: int) -> None:
    """Seed every generator training touches."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def with_frozen_rows(network: Tagger, frozen: torch.Tensor, labels: LabelSet) -> Tagger:
    """A copy of ``network`` whose word table is its trained rows followed by ``frozen`` rows."""
    config = network.config.model_copy(
        update={"num_words": network.config.num_words + frozen.size(0)}
    )
    merged = build_network(config, labels).to(frozen.device)
    state = network.state_dict()
    state["word_embedding.weight"] = torch.cat([state["word_embedding.weight"], frozen])
    merged.load_state_dict(state)
    return merged.eval()


def make_batches(examples: list[_Item], batch_size: int, rng: random.Random) -> list[list[_Item]]:
    """Shuffle, sort within pools of 50 batches by length (less padding), shuffle the batches."""
    shuffled = examples[:]
    rng.shuffle(shuffled)
    pool = batch_size * 50
    batches: list[list[_Item]] = []
    for start in range(0, len(shuffled), pool):
        chunk = sorted(shuffled[start : start + pool], key=lambda e: len(e[0]))
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


@dataclass
class TrainingState:
    """A network being trained and what turns it into a servable bundle at each checkpoint."""

    network: Tagger
    words: Vocabulary
    chars: Vocabulary
    labels: LabelSet
    frozen_rows: torch.Tensor
    # (tokens, tag indices, intent index or -1)
    train_data: list[tuple[list[str], list[int], int]]
    intents: list[str]
    teacher: Teacher | None = None
    # The init model's name and version (model.init), for the card.
    init: dict[str, str] | None = None

    def bundle(self, card: ModelCard, weights: Tagger | None = None) -> ModelBundle:
        """``weights`` (the trained network by default) with the frozen GloVe rows appended,
        as a servable bundle."""
        network = with_frozen_rows(weights or self.network, self.frozen_rows, self.labels)
        return ModelBundle(network, self.words, self.chars, self.labels, card, self.intents)


def train(
    config: TrainConfig,
    output: Path,
    device: str = "cpu",
    data_root: Path | None = None,
    progress: bool = True,
    train_set: list[Example] | None = None,
) -> dict[str, Any]:
    """Train per ``config``, write the best-on-dev artifact to ``output`` and return its metrics.

    ``train_set``: the training split, when the caller has read it already (before a dev
    split). ``config`` is written to ``output`` (:data:`RESOLVED_CONFIG`) once the data is read
    and the network built."""
    started = time.monotonic()
    set_seed(config.training.seed)
    root = data_dir(data_root)
    splits = read_splits(config, root, train_set)
    state = build_state(config, splits.train, device, root)
    card = initial_card(config, device, state.teacher, state.init)
    output.mkdir(parents=True, exist_ok=True)
    save_config(config, output / RESOLVED_CONFIG)
    best_epoch, history = fit(state, splits.dev, config.training, card, output, progress)
    return finish(output, device, splits, best_epoch, history, started)


def build_state(
    config: TrainConfig, train_set: list[Example], device: str, root: Path | None = None
) -> TrainingState:
    """Vocabularies, labels and a network initialised from pretrained vectors, or from the
    init model (``model.init``) with the vectors for the words it lacks."""
    section = config.model
    types = sorted(entity_types([t for e in train_set for t in e.tags]))
    labels = LabelSet(labels_for(types, section.scheme), section.scheme)
    intents = intent_labels(config, train_set)
    start = initial_network(section, train_set, labels, intents, data_dir(root))
    intent_index = {intent: i for i, intent in enumerate(intents)}
    train_data = [
        (
            e.tokens,
            [labels.index(t) for t in convert(e.tags, "BIO", section.scheme)],
            intent_index.get(e.intent or "", -1),
        )
        for e in train_set
    ]
    teacher = load_teacher(config.training.distillation, labels, bool(intents), device)
    return TrainingState(
        start.network.to(device),
        start.words,
        start.chars,
        labels,
        start.frozen_rows.to(device),
        train_data,
        intents,
        teacher,
        start.init,
    )


def intent_labels(config: TrainConfig, train_set: list[Example]) -> list[str]:
    """The intent head's classes: every intent (multi-intent labels whole) seen in training,
    sorted; empty when the config asks for no head."""
    if not config.model.intents:
        if config.training.select_by != "f1":
            raise ValueError(
                f"training.select_by = {config.training.select_by} needs model.intents = true"
            )
        return []
    missing = sum(e.intent is None for e in train_set)
    if missing:
        raise ValueError(
            f"model.intents is true but {missing} of {len(train_set)} training sentences have "
            f"no intent (a seq.in/seq.out folder needs a label file: {config.data.train})"
        )
    return sorted({e.intent for e in train_set if e.intent is not None})


def initial_card(
    config: TrainConfig,
    device: str,
    teacher: Teacher | None = None,
    init: dict[str, str] | None = None,
) -> ModelCard:
    """The model card before any score is known: identity, input contract, provenance."""
    artifact = config.artifact
    return ModelCard(
        name=artifact.name,
        version=artifact.version,
        dataset=artifact.dataset,
        description=artifact.description,
        tokenizer=TokenizerSpec(style=artifact.tokenizer, lowercase=artifact.lowercase),
        training={
            "config": config.model_dump(mode="json"),
            "device": device,
            "machine": _machine(),
            **({"teacher": teacher.describe()} if teacher else {}),
            **({"init": init} if init else {}),
        },
    )


def fit(
    state: TrainingState,
    dev_set: list[Example],
    opt: OptimConfig,
    card: ModelCard,
    output: Path,
    progress: bool,
) -> tuple[int, list[dict[str, Any]]]:
    """Epochs until the budget, patience or time runs out; the best on dev is saved to
    ``output``. Returns the best epoch and one record per epoch (also printed as JSON)."""
    started = time.monotonic()
    optimizer, scheduler = make_optimizer(state.network, opt)
    average = weight_average(state.network, opt.weight_average)
    rng = random.Random(opt.seed)
    best_score, best_epoch, history = -1.0, 0, []
    for epoch in range(1, opt.epochs + 1):
        epoch_start = time.monotonic()
        loss = run_epoch(state, optimizer, opt, rng, progress, epoch, average)
        scheduler.step()
        bundle = state.bundle(card, averaged_network(average))
        dev_metrics = evaluate(Predictor(bundle, batch_size=256), dev_set)
        record = {
            "epoch": epoch,
            "loss": round(loss, 4),
            "dev_f1": round(dev_metrics["f1"], 2),
            **{
                f"dev_{name}": round(dev_metrics[name], 2)
                for name in ("intent_accuracy", "frame_accuracy")
                if name in dev_metrics
            },
            "lr": round(optimizer.param_groups[0]["lr"], 6),
            "epoch_seconds": round(time.monotonic() - epoch_start, 1),
            "elapsed_minutes": round((time.monotonic() - started) / 60, 1),
        }
        history.append(record)
        print(json.dumps(record), flush=True)
        if dev_metrics[opt.select_by] > best_score:
            best_score, best_epoch = dev_metrics[opt.select_by], epoch
            bundle.card = card.model_copy(
                update={"dev_metrics": _rounded(dev_metrics), "best_epoch": epoch}
            )
            save(bundle, output)
        elif epoch - best_epoch >= opt.patience:
            print(json.dumps({"early_stop": epoch, "best_epoch": best_epoch}), flush=True)
            break
        if opt.max_minutes and (time.monotonic() - started) / 60 > opt.max_minutes:
            print(json.dumps({"time_limit": epoch, "best_epoch": best_epoch}), flush=True)
            break
    return best_epoch, history


def run_epoch(
    state: TrainingState,
    optimizer: torch.optim.Optimizer,
    opt: OptimConfig,
    rng: random.Random,
    progress: bool,
    epoch: int,
    average: AveragedModel | None = None,
) -> float:
    """One pass over the training data, updating ``average`` after every step; returns the
    mean loss per sentence."""
    network = state.network
    network.train()
    device = next(network.parameters()).device
    total_loss = 0.0
    batches = make_batches(state.train_data, opt.batch_size, rng)
    for batch in tqdm(
        batches, desc=f"epoch {epoch}", disable=not progress, leave=False, file=sys.stderr
    ):
        tokens = [recase(b[0], opt.case_augmentation, rng) for b in batch]
        encoded = encode(tokens, state.words, state.chars, network.config.max_word_chars)
        if opt.word_dropout > 0:
            # Teach the <unk> row: some known words are hidden as if unseen.
            dropped = torch.rand(encoded.words.shape) < opt.word_dropout
            encoded.words[dropped & (encoded.words > 1)] = 1
        encoded = encoded.to(device)
        width = encoded.words.size(1)
        gold = torch.tensor([t + [0] * (width - len(t)) for _, t, _ in batch], device=device)
        intents = torch.tensor([i for _, _, i in batch], device=device) if state.intents else None
        if state.teacher is not None:
            loss = state.teacher.loss(network, encoded, gold, tokens)
        else:
            loss = network.loss(encoded, gold, intents, opt.tag_loss_weight, opt.intent_loss_weight)
        optimizer.zero_grad()
        loss.backward()
        if opt.clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(network.parameters(), opt.clip_norm)
        optimizer.step()
        if average is not None:
            average.update_parameters(network)
        total_loss += loss.item() * len(batch)
    network.eval()
    return total_loss / len(state.train_data)


def recase(tokens: list[str], augmentation: CaseAugmentation, rng: random.Random) -> list[str]:
    """The sentence as it is, or (with the configured probabilities) all lower- or upper-case."""
    if augmentation.lower == augmentation.upper == 0:
        return tokens
    draw = rng.random()
    if draw < augmentation.lower:
        return recase_tokens(tokens, "lower")
    if draw < augmentation.lower + augmentation.upper:
        return recase_tokens(tokens, "upper")
    return tokens


def finish(
    output: Path,
    device: str,
    splits: Splits,
    best_epoch: int,
    history: list[dict[str, Any]],
    started: float,
) -> dict[str, Any]:
    """Score the saved best model on dev (and test), write the scores into its card."""
    best = load(output, device)
    result: dict[str, Any] = {
        "best_epoch": best_epoch,
        "dev": _rounded(evaluate(Predictor(best), splits.dev)),
    }
    if splits.test is not None:
        result["test"] = _rounded(evaluate(Predictor(best), splits.test))
    minutes = round((time.monotonic() - started) / 60, 1)
    best.card = best.card.model_copy(
        update={
            "dev_metrics": result["dev"],
            "test_metrics": result.get("test"),
            "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "training_minutes": minutes,
            "history": history,
        }
    )
    save(best, output)
    result["training_minutes"] = minutes
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


def _machine() -> dict[str, Any]:
    import os

    return {
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }
