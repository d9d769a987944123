"""Character-span evaluation: what the service would return for each gold text, scored by
exact ``(start, end, type)`` match against the annotator's spans.

The texts go the service's own way (tagserve.text.pipeline: tokenize in the card's style,
split into sentences, cut at ``max_sentence_tokens``, tag, build entities with offsets), so
the score counts every difference a user would see, the tokenizer's included: a gold span
whose ends fall inside a token, or that crosses a sentence break, can never be matched
(``unreachable_gold`` counts those).
The keys follow :func:`tagserve.training.evaluate.score`, so ``format_table`` prints it.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from typing import Any

from tagserve.model.card import TokenizerSpec
from tagserve.model.predictor import Predictor
from tagserve.model.schemes import Scheme
from tagserve.text.limits import MAX_SENTENCE_TOKENS
from tagserve.text.pipeline import TextPlan, build_results, model_inputs, plan_text
from tagserve.training.annotations import SpanRecord
from tagserve.training.evaluate import format_table, score_frames

SpanSet = set[tuple[int, int, str]]


def evaluate_spans(
    predictor: Predictor,
    records: list[SpanRecord],
    tokenizer: TokenizerSpec,
    max_sentence_tokens: int = MAX_SENTENCE_TOKENS,
) -> dict[str, Any]:
    """Tag each record's text as the service does and score its entities against the gold
    spans: micro and per-type precision/recall/F1 in percent; for a model with an intent
    head and records with intents, intent accuracy and frame accuracy (intent right and
    every span exactly right) too."""
    scheme: Scheme = predictor.scheme  # type: ignore[assignment]
    plans = [plan_text(record.text, tokenizer, max_sentence_tokens) for record in records]
    tagged = predictor.predict(model_inputs(plans, tokenizer))
    with_intents = bool(predictor.bundle.intents)
    results = build_results(plans, tagged, scheme, intents=with_intents)
    gold = [set(record.spans) for record in records]
    predicted = [{(e["start"], e["end"], e["label"]) for e in r["entities"]} for r in results]
    metrics = score_spans(gold, predicted)
    metrics.update(
        records=len(records),
        sentences=sum(len(plan.sentences) for plan in plans),
        tokens=sum(len(sentence) for plan in plans for sentence in plan.sentences),
        unreachable_gold=sum(
            _unreachable(plan, spans) for plan, spans in zip(plans, gold, strict=True)
        ),
    )
    if with_intents and any(record.intent is not None for record in records):
        intents = [(r.get("intent") or {}).get("label", "") for r in results]
        metrics.update(score_frames(records, intents, gold, predicted))
    return metrics


def score_spans(gold: list[SpanSet], predicted: list[SpanSet]) -> dict[str, Any]:
    """Exact-match precision, recall and F1 in percent, micro and per type (every type in
    gold or predictions; ``support`` is the gold count), as seqeval reports them."""
    counts: dict[str, list[int]] = {}  # type → [true positives, predicted, gold]
    for gold_spans, predicted_spans in zip(gold, predicted, strict=True):
        for _, _, label in gold_spans:
            counts.setdefault(label, [0, 0, 0])[2] += 1
        for span in predicted_spans:
            entry = counts.setdefault(span[2], [0, 0, 0])
            entry[1] += 1
            entry[0] += span in gold_spans
    per_type = {label: _prf(*counts[label]) for label in sorted(counts)}
    total = [sum(c[i] for c in counts.values()) for i in range(3)]
    micro = _prf(*total)
    return {
        "precision": micro["precision"],
        "recall": micro["recall"],
        "f1": micro["f1"],
        "per_type": per_type,
        "gold_spans": total[2],
        "predicted_spans": total[1],
    }


def format_span_table(metrics: dict[str, Any]) -> str:
    """:func:`~tagserve.training.evaluate.format_table`, and what only spans can say."""
    return (
        format_table(metrics) + f"\n{metrics['records']} texts, {metrics['gold_spans']} gold spans"
        f" ({metrics['unreachable_gold']} not whole tokens of one sentence: never matched)"
    )


def _prf(true_positives: int, predicted: int, gold: int) -> dict[str, Any]:
    precision = true_positives / predicted if predicted else 0.0
    recall = true_positives / gold if gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": 100 * precision, "recall": 100 * recall, "f1": 100 * f1, "support": gold}


def _unreachable(plan: TextPlan, spans: SpanSet) -> int:
    """Gold spans no entity the service returns can equal: an entity is whole tokens of one
    sentence, so an end inside a token, an edge on whitespace or a span across a sentence
    break is never matched."""
    tokens = [token for sentence in plan.sentences for token in sentence]
    sentence_of = [n for n, sentence in enumerate(plan.sentences) for _ in sentence]
    starts = [t.start for t in tokens]
    ends = [t.end for t in tokens]
    unreachable = 0
    for start, end, _ in spans:
        first, last = bisect_right(ends, start), bisect_left(starts, end) - 1
        unreachable += (
            first > last
            or starts[first] != start
            or ends[last] != end
            or sentence_of[first] != sentence_of[last]
        )
    return unreachable
