"""Character-span evaluation: a hand-counted case through the service's path, and the shipped
``ner`` model scored by spans against the token-level seqeval score of the same sentences."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tagserve.model.artifact import resolve
from tagserve.model.card import TokenizerSpec
from tagserve.model.predictor import Predictor
from tagserve.model.tagged import TaggedSentence
from tagserve.text.limits import MAX_SENTENCE_TOKENS
from tagserve.text.sentences import split_sentences
from tagserve.text.tokenizer import may_hold_identifiers, tokenize
from tagserve.training.annotations import SpanRecord
from tagserve.training.evaluate import evaluate, format_table
from tagserve.training.readers import read_dataset
from tagserve.training.span_eval import evaluate_spans, format_span_table
from tests.annotation_exports import from_tokens

CONLL = TokenizerSpec(style="conll")


@dataclass
class Bundle:
    intents: list[str] = field(default_factory=list)


class ScriptedTagger:
    """Answers each sentence (its words) with the tags and intent written for it."""

    scheme = "BIO"

    def __init__(self, answers: dict[str, tuple[str, str | None]], intents: list[str]) -> None:
        self.answers = answers
        self.bundle = Bundle(intents)
        self.seen: list[list[str]] = []

    def predict(self, sentences: list[list[str]]) -> list[TaggedSentence]:
        self.seen.extend(sentences)
        out = []
        for words in sentences:
            tags, intent = self.answers[" ".join(words)]
            ranked = [(intent, 0.9)] if intent else None
            out.append(TaggedSentence(tags.split(), [0.9] * len(words), ranked))
        return out


def record(text: str, spans: list[tuple[int, int, str]], intent: str | None = None) -> SpanRecord:
    return SpanRecord(text, spans, intent, "test")


def test_spans_are_counted_per_type_and_one_character_off_is_a_miss() -> None:
    records = [
        # Alice (0-5) and Paris (17-22) right; Bob predicted PER, gold ORG.
        record(
            "Alice met Bob in Paris .", [(0, 5, "PER"), (10, 13, "ORG"), (17, 22, "LOC")], "meet"
        ),
        # Gold "Caro" (0-4) is one character short of the predicted "Carol": a miss both ways.
        record("Carol lives in Rome .", [(0, 4, "PER"), (15, 19, "LOC")], "live"),
        # Two sentences, as the service splits them; the second's LOC is not predicted.
        record("Dan left . He went to Oslo .", [(0, 3, "PER"), (22, 26, "LOC")], "live"),
    ]
    tagger = ScriptedTagger(
        {
            "Alice met Bob in Paris .": ("B-PER O B-PER O B-LOC O", "meet"),
            "Carol lives in Rome .": ("B-PER O O B-LOC O", "meet"),
            "Dan left .": ("B-PER O O", "live"),
            "He went to Oslo .": ("O O O O O", "meet"),
        },
        ["live", "meet"],
    )
    metrics = evaluate_spans(tagger, records, CONLL)  # type: ignore[arg-type]
    assert tagger.seen[-2:] == [["Dan", "left", "."], ["He", "went", "to", "Oslo", "."]]
    # PER: predicted Alice, Bob, Carol, Dan; gold Alice, Caro, Dan -> 2 of 4, 2 of 3.
    per = metrics["per_type"]
    assert per["PER"]["precision"] == pytest.approx(50.0)
    assert per["PER"]["recall"] == pytest.approx(200 / 3)
    assert per["PER"]["support"] == 3
    # LOC: predicted Paris, Rome; gold Paris, Rome, Oslo. ORG: gold Bob, never predicted.
    assert (per["LOC"]["precision"], per["LOC"]["recall"]) == (
        pytest.approx(100.0),
        pytest.approx(200 / 3),
    )
    assert (per["ORG"]["precision"], per["ORG"]["recall"], per["ORG"]["f1"]) == (0.0, 0.0, 0.0)
    # Micro: 4 right of 6 predicted and 7 gold.
    assert metrics["precision"] == pytest.approx(400 / 6)
    assert metrics["recall"] == pytest.approx(400 / 7)
    assert metrics["f1"] == pytest.approx(2 * 4 / (6 + 7) * 100)
    assert (metrics["gold_spans"], metrics["predicted_spans"], metrics["unreachable_gold"]) == (
        7,
        6,
        1,
    )
    # A two-sentence text's intent is the token-weighted mean: meet (5 tokens) over live (3).
    assert metrics["intent_accuracy"] == pytest.approx(100 / 3)
    assert metrics["frame_accuracy"] == 0.0
    assert metrics["per_intent"]["live"] == {"support": 2, "correct": 0, "accuracy": 0.0}
    table = format_span_table(metrics)
    assert "3 texts, 7 gold spans (1 not whole tokens of one sentence: never matched)" in table
    assert "intent accuracy 33.33" in table


def test_without_an_intent_head_there_is_no_intent_score() -> None:
    tagger = ScriptedTagger({"Ada wrote .": ("B-PER O O", None)}, [])
    metrics = evaluate_spans(tagger, [record("Ada wrote .", [(0, 3, "PER")], "x")], CONLL)  # type: ignore[arg-type]
    assert metrics["f1"] == pytest.approx(100.0) and "intent_accuracy" not in metrics


@pytest.mark.slow
def test_span_f1_of_the_shipped_ner_equals_seqeval_where_tokenization_agrees(
    data_dir: Path,
) -> None:
    predictor = Predictor.from_path(resolve("ner"))
    tokenizer = predictor.bundle.card.tokenizer
    test = read_dataset(data_dir / "conll2003/test.txt")[:600]

    def agrees(tokens: list[str]) -> bool:
        # The service reads the same tokens as one sentence, with no URL/handle forced to O.
        text = " ".join(tokens)
        found = tokenize(text, tokenizer.style)
        return (
            [t.text for t in found] == tokens
            and len(split_sentences(text, found)) == 1
            and len(tokens) <= MAX_SENTENCE_TOKENS
            and not may_hold_identifiers(text)
        )

    same = [e for e in test if agrees(e.tokens)]
    assert len(same) > 500  # most of them: the figure is in test_annotation_readers.py
    golds = [from_tokens(e.tokens, e.tags) for e in same]
    records = [SpanRecord(g.text, g.spans, None, f"test {n}") for n, g in enumerate(golds)]
    by_spans = evaluate_spans(predictor, records, tokenizer)
    by_tokens = evaluate(predictor, same)
    for key in ("precision", "recall", "f1"):
        assert by_spans[key] == pytest.approx(by_tokens[key], abs=1e-9), key
    assert by_spans["per_type"].keys() == by_tokens["per_type"].keys()
    for name, values in by_tokens["per_type"].items():
        assert by_spans["per_type"][name] == pytest.approx(values, abs=1e-9), name
    assert by_spans["f1"] > 80  # a real model, not an empty prediction scoring 0 = 0
    assert format_table(by_spans).splitlines()[-2:] == format_table(by_tokens).splitlines()[-2:]
