"""Vocabularies and per-token features (word ids, casing classes, character ids).

Words are looked up lower-cased, the way GloVe 6B was built; the case information that
lower-casing throws away comes back through a small casing feature.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from tagserve.model.schemes import Scheme, check_scheme, split_tag

PAD = "<pad>"
UNK = "<unk>"
_DIGITS = re.compile(r"\d")

CASINGS: tuple[str, ...] = (
    PAD,
    "numeric",
    "mainly_numeric",
    "all_lower",
    "all_upper",
    "initial_upper",
    "contains_digit",
    "other",
)


def casing_class(word: str) -> int:
    """Index into :data:`CASINGS` describing the token's shape (Reimers & Gurevych, 2017)."""
    digits = sum(ch.isdigit() for ch in word)
    if word.isdigit():
        return 1
    if digits / max(len(word), 1) > 0.5:
        return 2
    if word.islower():
        return 3
    if word.isupper():
        return 4
    if word[:1].isupper():
        return 5
    if digits:
        return 6
    return 7


def word_keys(word: str) -> tuple[str, str]:
    """Lookup keys for a word, most specific first: lower-cased, then with digits as ``0``."""
    lower = word.lower()
    return lower, _DIGITS.sub("0", lower)


@dataclass
class Vocabulary:
    """A string ↔ index map with ``<pad>`` at 0 and ``<unk>`` at 1."""

    tokens: list[str] = field(default_factory=lambda: [PAD, UNK])
    _index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.tokens[:2] != [PAD, UNK]:
            raise ValueError(f"vocabulary must start with {PAD!r}, {UNK!r}; got {self.tokens[:2]}")
        self._index = {token: i for i, token in enumerate(self.tokens)}
        if len(self._index) != len(self.tokens):
            raise ValueError("vocabulary holds duplicate entries")

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: str) -> bool:
        return token in self._index

    def add(self, token: str) -> int:
        """Add ``token`` if new and return its index."""
        index = self._index.get(token)
        if index is None:
            index = len(self.tokens)
            self.tokens.append(token)
            self._index[token] = index
        return index

    def index(self, token: str) -> int:
        """Index of ``token``, or of ``<unk>``."""
        return self._index.get(token, 1)

    def word_index(self, word: str) -> int:
        """Index of a word by its lookup keys (see :func:`word_keys`), or of ``<unk>``."""
        for key in word_keys(word):
            index = self._index.get(key)
            if index is not None:
                return index
        return 1

    @classmethod
    def from_tokens(cls, tokens: Iterable[str]) -> Vocabulary:
        """Build from an iterable, keeping first occurrences in order."""
        vocab = cls()
        for token in tokens:
            vocab.add(token)
        return vocab


@dataclass(frozen=True)
class LabelSet:
    """The ordered tag list of a model and the scheme its tags follow (the one place the
    scheme is kept: ``labels.json``)."""

    labels: list[str]
    scheme: Scheme

    def __post_init__(self) -> None:
        check_scheme(self.scheme)
        if len(set(self.labels)) != len(self.labels) or "O" not in self.labels:
            raise ValueError(f"label list must be unique and contain 'O'; got {self.labels}")
        for tag in self.labels:
            prefix, _ = split_tag(tag)
            if self.scheme == "BIO" and prefix in {"E", "S"}:
                raise ValueError(f"tag {tag!r} is not a BIO tag")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def entity_types(self) -> list[str]:
        """The entity types the tags name, sorted."""
        return sorted({split_tag(tag)[1] for tag in self.labels if tag != "O"})

    def index(self, tag: str) -> int:
        """Index of ``tag``; raises naming the known tags for an unknown one."""
        try:
            return self.labels.index(tag)
        except ValueError:
            raise ValueError(
                f"unknown tag {tag!r}: this model knows {len(self.labels)} tags"
            ) from None
