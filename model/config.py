"""The network's hyperparameters, defined once: the training config's ``[model]`` section
extends :class:`Architecture`, and ``config.json`` holds a :class:`TaggerConfig`."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

CharEncoder = Literal["cnn", "lstm", "none"]
Rnn = Literal["lstm", "gru"]
Decoder = Literal["crf", "softmax"]


class Architecture(BaseModel):
    """Choices that shape the network, with the defaults every config starts from."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    word_dim: int = Field(50, ge=1)
    casing_dim: int = Field(8, ge=1)
    char_encoder: CharEncoder = "cnn"
    char_dim: int = Field(30, ge=1)
    char_channels: int = Field(50, ge=1)
    char_kernel: int = Field(3, ge=1)
    max_word_chars: int = Field(30, ge=1)
    rnn: Rnn = "lstm"
    hidden_size: int = Field(200, ge=1)
    num_layers: int = Field(1, ge=1)
    bidirectional: bool = True
    dropout: float = Field(0.5, ge=0.0, lt=1.0)
    decoder: Decoder = "crf"

    def architecture(self) -> dict[str, Any]:
        """Only the :class:`Architecture` fields (a subclass's own fields left out)."""
        return {name: getattr(self, name) for name in Architecture.model_fields}


class TaggerConfig(Architecture):
    """Everything needed to rebuild a :class:`tagserve.model.network.Tagger` before loading
    weights: the architecture plus the table sizes the vocabularies fix."""

    num_words: int = Field(ge=1)
    num_chars: int = Field(ge=1)
    num_tags: int = Field(ge=1)
    num_intents: int = Field(0, ge=0, description="0: no intent head")
