"""The network's constructor arguments, saved as ``config.json`` beside the weights."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

from tagserve.model.schemes import Scheme, check_scheme


@dataclass(frozen=True)
class TaggerConfig:
    """Everything needed to rebuild a :class:`model.network.Tagger` before loading weights."""

    num_words: int
    num_chars: int
    num_tags: int
    scheme: Scheme = "BIOES"
    word_dim: int = 50
    casing_dim: int = 8
    char_encoder: Literal["cnn", "lstm", "none"] = "cnn"
    char_dim: int = 30
    char_channels: int = 50
    char_kernel: int = 3
    max_word_chars: int = 30
    rnn: Literal["lstm", "gru"] = "lstm"
    hidden_size: int = 200
    num_layers: int = 1
    bidirectional: bool = True
    dropout: float = 0.5
    decoder: Literal["crf", "softmax"] = "crf"

    def __post_init__(self) -> None:
        check_scheme(self.scheme)
        choices = {
            "char_encoder": ("cnn", "lstm", "none"),
            "rnn": ("lstm", "gru"),
            "decoder": ("crf", "softmax"),
        }
        for name, allowed in choices.items():
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
        for name in ("num_words", "num_chars", "num_tags", "word_dim", "hidden_size", "num_layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1; got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1); got {self.dropout}")

    def to_json(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TaggerConfig:
        """Rebuild, rejecting unknown keys so a typo is not silently ignored."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown model config keys: {', '.join(unknown)}")
        return cls(**data)
