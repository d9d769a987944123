"""The straight path from raw text to results: text → tokens → sentences → words for the
model, then its tags → tokens and entities with offsets into the text.

Plain synchronous functions: the HTTP route awaits its batcher between :func:`model_inputs`
and :func:`build_results`, ``tagserve tag`` calls a predictor there. Results are plain dicts
(no per-token pydantic objects on the hot path), serialised by orjson.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tagserve.model.card import TokenizerSpec
from tagserve.model.schemes import Scheme, bio_tags_and_spans
from tagserve.model.tagged import TaggedSentence
from tagserve.text.sentences import split_sentences
from tagserve.text.tokenizer import Token, is_identifier, may_hold_identifiers, tokenize


@dataclass(frozen=True)
class TextPlan:
    """A text cut into model-sized sentences of tokens, with offsets into the text."""

    text: str
    sentences: list[list[Token]]


def plan_text(text: str, tokenizer: TokenizerSpec, max_sentence_tokens: int) -> TextPlan:
    """Tokenize and split into sentences; over-long sentences are cut into pieces."""
    sentences = []
    for sentence in split_sentences(text, tokenize(text, tokenizer.style)):
        if len(sentence) <= max_sentence_tokens:
            sentences.append(sentence)
            continue
        for start in range(0, len(sentence), max_sentence_tokens):
            sentences.append(sentence[start : start + max_sentence_tokens])
    return TextPlan(text, sentences)


def plan_tokens(tokens: list[str], max_sentence_tokens: int) -> TextPlan:
    """Pre-tokenized input: offsets refer to the tokens joined by single spaces."""
    placed = []
    position = 0
    for word in tokens:
        placed.append(Token(word, position, position + len(word)))
        position += len(word) + 1
    pieces = [
        placed[i : i + max_sentence_tokens] for i in range(0, len(placed), max_sentence_tokens)
    ]
    return TextPlan(" ".join(tokens), pieces)


def model_inputs(plans: list[TextPlan], tokenizer: TokenizerSpec) -> list[list[str]]:
    """Every sentence of every plan as the words the model reads, in order."""
    return [
        [t.text.lower() if tokenizer.lowercase else t.text for t in sentence]
        for plan in plans
        for sentence in plan.sentences
    ]


def build_results(
    plans: list[TextPlan],
    tagged: list[TaggedSentence],
    scheme: Scheme,
    intents: bool = False,
    intent_top_k: int | None = None,
) -> list[dict[str, Any]]:
    """One result per plan from the model's answers to :func:`model_inputs` (same order);
    with ``intents`` (a model with an intent head) each result carries the text's intent."""
    answers = iter(tagged)
    results = []
    for plan in plans:
        mine = [next(answers) for _ in plan.sentences]
        result = build_result(plan, mine, scheme)
        if intents:
            result["intent"] = text_intent(mine, intent_top_k)
        results.append(result)
    return results


def text_intent(tagged: list[TaggedSentence], top_k: int | None) -> dict[str, Any] | None:
    """One intent per text: the token-weighted mean of its sentences' intent distributions
    (a one-sentence text gets exactly its sentence's); None for a text with no tokens."""
    totals: dict[str, float] = {}
    tokens = sum(len(sentence.tags) for sentence in tagged)
    for sentence in tagged:
        for label, probability in sentence.intents or []:
            totals[label] = totals.get(label, 0.0) + probability * len(sentence.tags) / tokens
    if not totals:
        return None
    ranked = sorted(totals.items(), key=lambda item: -item[1])
    label, score = ranked[0]
    intent: dict[str, Any] = {"label": label, "score": round(score, 4)}
    if top_k is not None:
        intent["alternatives"] = [{"label": k, "score": round(v, 4)} for k, v in ranked[:top_k]]
    return intent


def build_result(plan: TextPlan, tagged: list[TaggedSentence], scheme: Scheme) -> dict[str, Any]:
    """Tokens with IOB2 tags and scores, and the entities they form, never across sentences."""
    tokens: list[dict[str, Any]] = []
    entities: list[dict[str, Any]] = []
    text = plan.text
    check_identifiers = may_hold_identifiers(text)
    for sentence, result in zip(plan.sentences, tagged, strict=True):
        # Spans decoded once, in the model's scheme; written as BIO they are the BIO tags'
        # spans too (for BIO input this is conlleval's repair of a stray I-).
        tags, spans = bio_tags_and_spans(result.tags, scheme)
        scores = [round(s, 4) for s in result.scores]
        # URLs, e-mail addresses, @handles and #hashtags are never part of an entity: they
        # are O by rule (score 1), and an entity they interrupted is repaired around them.
        identifiers = (
            [i for i, token in enumerate(sentence) if is_identifier(token.text)]
            if check_identifiers
            else []
        )
        if identifiers:
            for i in identifiers:
                tags[i], scores[i] = "O", 1.0
            tags, spans = bio_tags_and_spans(tags, "BIO")
        for token, tag, score in zip(sentence, tags, scores, strict=True):
            tokens.append(
                {
                    "text": token.text,
                    "start": token.start,
                    "end": token.end,
                    "tag": tag,
                    "score": score,
                }
            )
        for span in spans:
            start, end = sentence[span.start].start, sentence[span.end - 1].end
            entities.append(
                {
                    "label": span.label,
                    "text": text[start:end],
                    "start": start,
                    "end": end,
                    "score": min(scores[span.start : span.end]),
                }
            )
    return {"text": text, "tokens": tokens, "entities": entities}
