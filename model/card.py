"""The model card: what an artifact says about itself (``metadata.json``), as one validated
record, so an artifact that cannot serve is refused when it is read, not on every request."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

TokenizerStyle = Literal["conll", "atis"]
# The precision a model is served in (tagserve.model.quantize).
Precision = Literal["float32", "int8"]
# Written by artifacts of tagserve 0.1 and derived from labels.json now.
_LEGACY_KEYS = ("scheme", "entity_types")


class TokenizerSpec(BaseModel):
    """How raw text must be tokenized for this model: the style its training data used."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    style: TokenizerStyle
    lowercase: bool = False


class ModelCard(BaseModel):
    """Identity, input contract, scores and provenance of one model."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    version: str = "0"
    dataset: str = ""
    description: str = ""
    tokenizer: TokenizerSpec
    precision: Precision = Field(
        "float32",
        description="how the service loads it unless TAGSERVE_PRECISION says otherwise: int8 "
        "only where int8 was measured to lose at most 0.2 F1 on every casing",
    )
    dev_metrics: dict[str, Any] | None = None
    test_metrics: dict[str, Any] | None = None
    best_epoch: int | None = None
    trained_at: str | None = None
    training_minutes: float | None = None
    training: dict[str, Any] | None = Field(
        None, description="provenance: the training recipe, device and machine"
    )
    history: list[dict[str, Any]] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _drop_legacy_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if k not in _LEGACY_KEYS}
        return data
