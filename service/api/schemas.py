"""Request and response models of the HTTP API (validation and the OpenAPI page)."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

HARRY = "Harry Potter and Hermione Granger invented a new spell"
# JSON can carry a lone UTF-16 surrogate ("\\ud800") that no UTF-8 text can hold.
_SURROGATE = re.compile("[\ud800-\udfff]")


def _refuse_surrogates(text: str, where: str) -> None:
    """Refuse text that cannot be encoded as UTF-8, at the edge, naming where it is."""
    found = _SURROGATE.search(text)
    if found is not None:
        raise ValueError(
            f"{where}lone surrogate U+{ord(found.group()):04X} at offset {found.start()} is "
            "not valid Unicode text; send UTF-8 (or pair the surrogate)"
        )


class TagRequest(BaseModel):
    """Exactly one of ``text``, ``texts`` or ``tokens``; limits are checked by the service."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"text": HARRY, "model": "ner"},
                {
                    "texts": ["arrive Taipei on November 2nd", "fly from boston to denver"],
                    "model": "slots",
                },
                {"tokens": [["Harry", "Potter", "visited", "London"]]},
                {
                    "text": "show me flights from boston to denver",
                    "model": "slots",
                    "intent_top_k": 3,
                },
            ]
        },
    )

    text: str | None = Field(None, description="one raw text: a sentence or a whole document")
    texts: list[str] | None = Field(None, description="several raw texts, answered in order")
    tokens: list[list[str]] | None = Field(
        None,
        description=(
            "pre-tokenized sentences; offsets then refer to the tokens joined by single spaces"
        ),
    )
    model: str | None = Field(
        None, max_length=100, description="model name (see GET /models); default `ner`"
    )
    intent_top_k: int | None = Field(
        None,
        ge=1,
        le=100,
        description="for a model with an intent head: also list the k most likely intents "
        "(at most the model's number of intents)",
    )

    @field_validator("text")
    @classmethod
    def _text_is_valid_unicode(cls, value: str | None) -> str | None:
        if value is not None:
            _refuse_surrogates(value, "")
        return value

    @field_validator("texts")
    @classmethod
    def _texts_are_valid_unicode(cls, value: list[str] | None) -> list[str] | None:
        for i, text in enumerate(value or []):
            _refuse_surrogates(text, f"item {i}: ")
        return value

    @field_validator("tokens")
    @classmethod
    def _tokens_are_valid_unicode(cls, value: list[list[str]] | None) -> list[list[str]] | None:
        for i, words in enumerate(value or []):
            for j, word in enumerate(words):
                _refuse_surrogates(word, f"item [{i}][{j}]: ")
        return value

    @model_validator(mode="after")
    def _exactly_one_input(self) -> TagRequest:
        if (self.text is not None) + (self.texts is not None) + (self.tokens is not None) != 1:
            given = [
                name for name in ("text", "texts", "tokens") if getattr(self, name) is not None
            ]
            raise ValueError(
                "give exactly one of 'text', 'texts' or 'tokens' "
                f"(got {', '.join(given) or 'none'})"
            )
        return self


class TokenOut(BaseModel):
    text: str
    start: int = Field(description="code-point offset of the first character")
    end: int = Field(description="code-point offset after the last character")
    tag: str = Field(description="IOB2 tag")
    score: float = Field(description="CRF marginal probability of the tag")


class EntityOut(BaseModel):
    label: str
    text: str
    start: int
    end: int
    score: float = Field(description="lowest token score in the entity")


class IntentChoice(BaseModel):
    label: str
    score: float = Field(ge=0, le=1, description="the intent head's probability")


class IntentOut(BaseModel):
    """The text's intent (one per text: a multi-sentence text gets the token-weighted mean of
    its sentences' intent distributions)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "label": "atis_flight",
                    "score": 0.994,
                    "alternatives": [
                        {"label": "atis_flight", "score": 0.994},
                        {"label": "atis_airfare", "score": 0.004},
                        {"label": "atis_flight#atis_airfare", "score": 0.001},
                    ],
                }
            ]
        }
    )

    label: str
    score: float = Field(ge=0, le=1, description="the intent head's probability")
    alternatives: list[IntentChoice] | None = Field(
        None, description="the `intent_top_k` most likely intents, most likely first"
    )


class ResultOut(BaseModel):
    text: str
    tokens: list[TokenOut]
    entities: list[EntityOut]
    intent: IntentOut | None = Field(
        None,
        description="only for models with an intent head (`slots`); null for an empty text. "
        "Responses of other models have no `intent` key",
    )


class ModelRef(BaseModel):
    name: str
    version: str


class TagResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "model": {"name": "ner", "version": "1.0.0"},
                    "results": [
                        {
                            "text": "Harry Potter visited London",
                            "tokens": [
                                {
                                    "text": "Harry",
                                    "start": 0,
                                    "end": 5,
                                    "tag": "B-PER",
                                    "score": 0.998,
                                },
                                {
                                    "text": "Potter",
                                    "start": 6,
                                    "end": 12,
                                    "tag": "I-PER",
                                    "score": 0.997,
                                },
                                {
                                    "text": "visited",
                                    "start": 13,
                                    "end": 20,
                                    "tag": "O",
                                    "score": 0.999,
                                },
                                {
                                    "text": "London",
                                    "start": 21,
                                    "end": 27,
                                    "tag": "B-LOC",
                                    "score": 0.995,
                                },
                            ],
                            "entities": [
                                {
                                    "label": "PER",
                                    "text": "Harry Potter",
                                    "start": 0,
                                    "end": 12,
                                    "score": 0.997,
                                },
                                {
                                    "label": "LOC",
                                    "text": "London",
                                    "start": 21,
                                    "end": 27,
                                    "score": 0.995,
                                },
                            ],
                        }
                    ],
                }
            ]
        }
    )

    model: ModelRef
    results: list[ResultOut]


class ModelInfo(BaseModel):
    name: str
    version: str
    dataset: str
    description: str
    scheme: str = Field(description="the model's internal scheme; responses always use IOB2")
    entity_types: list[str]
    labels: list[str]
    intents: list[str] = Field(description="the intent head's labels; empty without a head")
    precision: Literal["float32", "int8"] = Field(
        description="what it is served in: TAGSERVE_PRECISION, else the model card's"
    )
    test_metrics: dict[str, Any] | None
    trained_at: str | None


class ModelsResponse(BaseModel):
    default: str
    models: list[ModelInfo]


class HealthResponse(BaseModel):
    status: str = Field(description="`ok`, `starting`, `draining` or `model worker down: NAME`")


class ErrorResponse(BaseModel):
    detail: str = Field(description="what was wrong, naming the field and the limit")
