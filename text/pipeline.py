"""The straight path of a request: text → tokens → sentences → model → tokens and entities.

Results are plain dicts (no per-token pydantic objects on the hot path), serialised by orjson.
Shared by the HTTP route and the offline ``tagserve tag`` command.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from tagserve.model.artifact import ModelBundle
from tagserve.model.predictor import TaggedSentence
from tagserve.model.schemes import convert, spans_from_tags
from tagserve.text.sentences import split_sentences
from tagserve.text.tokenizer import Token, tokenize

Tagger = Callable[[list[list[str]]], Awaitable[list[TaggedSentence]]]


@dataclass(frozen=True)
class TextPlan:
    """A text cut into model-sized sentences of tokens, with offsets into the text."""

    text: str
    sentences: list[list[Token]]


@dataclass(frozen=True)
class ModelProfile:
    """What the service needs to know about a model beyond its weights."""

    name: str
    version: str
    scheme: str
    tokenizer_style: str
    lowercase: bool

    @classmethod
    def of(cls, name: str, bundle: ModelBundle) -> ModelProfile:
        """Read the tokenization the model was trained with from its metadata."""
        meta = bundle.metadata
        tokenizer = meta.get("tokenizer") or {}
        return cls(
            name=name,
            version=str(meta.get("version", "0")),
            scheme=bundle.config.scheme,
            tokenizer_style=tokenizer.get("style", "conll"),
            lowercase=bool(tokenizer.get("lowercase", False)),
        )


def plan_text(text: str, profile: ModelProfile, max_sentence_tokens: int) -> TextPlan:
    """Tokenize and split into sentences; over-long sentences are cut into pieces."""
    sentences = []
    for sentence in split_sentences(text, tokenize(text, profile.tokenizer_style)):
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


async def tag_plans(
    plans: list[TextPlan], profile: ModelProfile, tagger: Tagger
) -> list[dict[str, Any]]:
    """Run every sentence of every plan through ``tagger`` at once and build the results."""
    words = [
        [t.text.lower() if profile.lowercase else t.text for t in sentence]
        for plan in plans
        for sentence in plan.sentences
    ]
    tagged = iter(await tagger(words))
    return [
        build_result(plan, [next(tagged) for _ in plan.sentences], profile.scheme) for plan in plans
    ]


def build_result(plan: TextPlan, tagged: list[TaggedSentence], scheme: str) -> dict[str, Any]:
    """Tokens with IOB2 tags and scores, and the entities they form, never across sentences."""
    tokens: list[dict[str, Any]] = []
    entities: list[dict[str, Any]] = []
    text = plan.text
    for sentence, result in zip(plan.sentences, tagged, strict=True):
        tags = convert(result.tags, scheme, "BIO")  # type: ignore[arg-type]
        scores = [round(s, 4) for s in result.scores]
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
        for span in spans_from_tags(tags, "BIO"):
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
