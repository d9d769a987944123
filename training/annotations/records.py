"""What the annotation readers take and give: the options, one text with its gold character
spans, and where in the file it came from (so every error can name the record)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

from tagserve.model.card import TokenizerStyle
from tagserve.text.limits import MAX_SENTENCE_TOKENS
from tagserve.text.tokenizer import STYLES
from tagserve.training.readers import DataError

AnnotationFormat = Literal["label-studio", "label-studio-min", "doccano", "spans"]
ANNOTATION_FORMATS: tuple[AnnotationFormat, ...] = get_args(AnnotationFormat)
Misaligned = Literal["expand", "contract", "error"]
Overlaps = Literal["error", "longest"]
Offsets = Literal["codepoints", "utf16"]


@dataclass(frozen=True)
class AnnotationOptions:
    """How to read an export: the served model's tokenizer style, what to do with spans that
    do not fall on its token boundaries (``expand`` to the tokens they touch, ``contract`` to
    the tokens wholly inside, ``error``), with overlapping spans (``error``, or keep the
    ``longest``), and how the file counts offsets (``codepoints``, as Python, Label Studio
    and Prodigy do, or ``utf16`` code units, as doccano does by default).

    ``split_sentences`` cuts each text with the service's sentence splitter (the service tags
    sentence by sentence, so the model trains on what it will see), never inside a span;
    ``text_field``/``intent_field`` name the Label Studio data key holding the text and the
    choices control holding the intent when the export alone cannot tell.
    """

    tokenizer: TokenizerStyle = "conll"
    misaligned: Misaligned = "expand"
    overlaps: Overlaps = "error"
    offsets: Offsets = "codepoints"
    split_sentences: bool = True
    max_sentence_tokens: int = MAX_SENTENCE_TOKENS
    text_field: str | None = None
    intent_field: str | None = None

    def __post_init__(self) -> None:
        choices: dict[str, tuple[str, ...]] = {
            "tokenizer": STYLES,
            "misaligned": get_args(Misaligned),
            "overlaps": get_args(Overlaps),
            "offsets": get_args(Offsets),
        }
        for name, allowed in choices.items():
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
        if self.max_sentence_tokens < 1:
            raise ValueError(
                f"max_sentence_tokens must be at least 1, got {self.max_sentence_tokens}"
            )


@dataclass(frozen=True)
class Where:
    """A record's place: a line of a JSONL file, or a task/record of a JSON array."""

    path: Path
    line: int | None = None
    item: str = ""

    def __str__(self) -> str:
        return f"{self.path}:{self.line}" if self.line is not None else f"{self.path}: {self.item}"

    def error(self, problem: str) -> DataError:
        """A :class:`DataError` naming this record."""
        if self.line is not None or not self.item:
            return DataError(self.path, self.line, problem)
        return DataError(self.path, None, f"{self.item}: {problem}")


@dataclass(frozen=True)
class SpanRecord:
    """One text with its gold spans: code-point offsets, end exclusive, sorted, no overlaps,
    no whitespace at their edges; ``source`` is ``file:line`` or ``file: task 12``."""

    text: str
    spans: list[tuple[int, int, str]]
    intent: str | None
    source: str
    where: Where | None = field(default=None, compare=False, repr=False)

    def error(self, problem: str) -> DataError:
        """A :class:`DataError` naming this record."""
        if self.where is not None:
            return self.where.error(problem)
        return DataError(Path(self.source), None, problem)
