"""Entity-level scoring with seqeval (conlleval-compatible), micro and per type."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from seqeval.metrics import classification_report

from tagserve.model.predictor import Predictor
from tagserve.model.schemes import Scheme, convert
from tagserve.training.readers import Example


def score(gold: list[list[str]], predicted: list[list[str]]) -> dict[str, Any]:
    """Precision, recall and F1 in percent over BIO tag sequences, micro and per type."""
    report = classification_report(gold, predicted, output_dict=True, zero_division=0)
    per_type = {
        name: {
            "precision": 100 * values["precision"],
            "recall": 100 * values["recall"],
            "f1": 100 * values["f1-score"],
            "support": int(values["support"]),
        }
        for name, values in report.items()
        if not name.endswith(" avg")
    }
    micro = report.get("micro avg", {"precision": 0.0, "recall": 0.0, "f1-score": 0.0})
    return {
        "precision": 100 * micro["precision"],
        "recall": 100 * micro["recall"],
        "f1": 100 * micro["f1-score"],
        "per_type": per_type,
        "sentences": len(gold),
        "tokens": sum(len(s) for s in gold),
    }


def evaluate(predictor: Predictor, examples: list[Example]) -> dict[str, Any]:
    """Tag ``examples`` with ``predictor`` and score against their gold tags; for a model
    with an intent head and data with intents, intent and semantic-frame accuracy too."""
    scheme: Scheme = predictor.scheme  # type: ignore[assignment]
    predictions = predictor.predict([e.tokens for e in examples])
    gold = [convert(e.tags, "BIO", "BIO") for e in examples]
    predicted = [convert(p.tags, scheme, "BIO") for p in predictions]
    metrics = score(gold, predicted)
    if predictor.bundle.intents and any(e.intent is not None for e in examples):
        intents = [p.intents[0][0] if p.intents else "" for p in predictions]
        metrics.update(score_frames(examples, intents, gold, predicted))
    return metrics


class _WithIntent(Protocol):
    @property
    def intent(self) -> str | None: ...


def score_frames(
    examples: Sequence[_WithIntent],
    intents: list[str],
    gold_tags: Sequence[Any],
    predicted_tags: Sequence[Any],
) -> dict[str, Any]:
    """Intent accuracy (exact label match, so ``atis_airfare#atis_flight`` must be predicted
    whole) and semantic frame accuracy (intent and every slot right), in percent, with
    per-intent counts. The slots of a sentence are compared whole (tag lists, or sets of
    character spans), and a gold intent the model never saw in training, or none at all, is
    simply an error."""
    per_intent: dict[str, dict[str, Any]] = {}
    right_intents = right_frames = 0
    for example, intent, gold, predicted in zip(
        examples, intents, gold_tags, predicted_tags, strict=True
    ):
        counts = per_intent.setdefault(str(example.intent), {"support": 0, "correct": 0})
        counts["support"] += 1
        if intent == example.intent:
            counts["correct"] += 1
            right_intents += 1
            right_frames += gold == predicted
    for counts in per_intent.values():
        counts["accuracy"] = 100 * counts["correct"] / counts["support"]
    total = max(len(examples), 1)
    return {
        "intent_accuracy": 100 * right_intents / total,
        "frame_accuracy": 100 * right_frames / total,
        "per_intent": dict(sorted(per_intent.items())),
    }


def recase_tokens(tokens: list[str], casing: str) -> list[str]:
    """Every token lower-cased (``lower``) or upper-cased (``upper``)."""
    return [t.lower() if casing == "lower" else t.upper() for t in tokens]


def recase_example(example: Example, casing: str) -> Example:
    """The example with every token lower- or upper-cased (tags and intent unchanged)."""
    return Example(recase_tokens(example.tokens, casing), example.tags, example.intent)


def format_table(metrics: dict[str, Any]) -> str:
    """A conlleval-style text table."""
    width = max([24, *(len(name) + 2 for name in metrics["per_type"])])
    lines = [f"{'type':<{width}}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>10}"]
    for name, values in sorted(metrics["per_type"].items()):
        lines.append(
            f"{name:<{width}}{values['precision']:>10.2f}{values['recall']:>10.2f}"
            f"{values['f1']:>10.2f}{values['support']:>10d}"
        )
    support = sum(v["support"] for v in metrics["per_type"].values())
    lines.append(
        f"{'micro':<{width}}{metrics['precision']:>10.2f}{metrics['recall']:>10.2f}"
        f"{metrics['f1']:>10.2f}{support:>10d}"
    )
    lines.append(f"{metrics['sentences']} sentences, {metrics['tokens']} tokens")
    if "intent_accuracy" in metrics:
        lines.append(
            f"intent accuracy {metrics['intent_accuracy']:.2f}, "
            f"semantic frame accuracy {metrics['frame_accuracy']:.2f}"
        )
    return "\n".join(lines)
