"""Group tokens into sentences so a whole document can be tagged sentence by sentence.

A sentence ends at a blank line, or after ``.``, ``!``, ``?`` or ``...`` (plus any closing
quotes and brackets) when the next token looks like a sentence start (a capital letter, a
digit or an opening quote). Abbreviations are single tokens ("U.S.", "Mr."), so they never
end a sentence.
"""

from __future__ import annotations

import re

from tagserve.text.tokenizer import Token

_FINAL = frozenset({".", "!", "?", "...", "…"})
_CLOSING = frozenset({'"', "'", ")", "]", "}", "’", "”", "»"})
_BLANK_LINE = re.compile(r"\n[^\S\n]*\n")


def split_sentences(text: str, tokens: list[Token]) -> list[list[Token]]:
    """Every token in exactly one sentence, in order; no empty sentences."""
    sentences: list[list[Token]] = []
    current: list[Token] = []
    ended = False
    for i, token in enumerate(tokens):
        if current:
            gap = text[current[-1].end : token.start]
            starts_new = ended and token.text not in _CLOSING and _looks_like_start(token.text)
            if _BLANK_LINE.search(gap) or starts_new:
                sentences.append(current)
                current = []
                ended = False
        current.append(token)
        if token.text in _FINAL:
            ended = True
        elif ended and token.text in _CLOSING:
            pass
        else:
            ended = ended and i + 1 < len(tokens) and tokens[i + 1].text in _CLOSING
    if current:
        sentences.append(current)
    return sentences


def _looks_like_start(word: str) -> bool:
    first = word[0]
    return first.isupper() or first.isdigit() or first in {'"', "“", "'", "(", "‘", "«"}
