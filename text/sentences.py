"""Group tokens into sentences so a whole document can be tagged sentence by sentence.

A sentence ends at a blank line, or after ``.``, ``!``, ``?`` or ``...`` (plus any closing
quotes and brackets) when the next token looks like a sentence start (a capital letter, a
digit or an opening quote). Abbreviations are single tokens ("U.S.", "Mr."), so they never
end a sentence.

A single line break ends a sentence too when the line before it has no final punctuation
and the break was made on purpose: a headline, a dateline, a list item or a table row. A
break is taken as wrapping (inside a sentence) when the next line's first word would not
have fit on the line before it within the text's longest line, which is what a wrapping
editor or mail client does; every other break is deliberate, and so is every break before
a bulleted or numbered list item and every break in a text whose lines are all shorter than
40 characters (nobody wraps prose that narrow).
"""

from __future__ import annotations

import re

from tagserve.text.tokenizer import Token

_FINAL = frozenset({".", "!", "?", "...", "…"})
_CLOSING = frozenset({'"', "'", ")", "]", "}", "’", "”", "»"})
_BLANK_LINE = re.compile(r"\n[^\S\n]*\n")
# Nobody wraps prose this narrow: in a text whose lines are all shorter, every break is typed.
_NARROWEST_WRAP = 40
# A bullet or a list number starting a line: always a new item.
_LIST_ITEM = re.compile(r"(?:[-*•‣◦–—]|\d{1,3}[.)])\s")


def split_sentences(text: str, tokens: list[Token]) -> list[list[Token]]:
    """Every token in exactly one sentence, in order; no empty sentences."""
    sentences: list[list[Token]] = []
    current: list[Token] = []
    ended = False
    # Without a line break (most requests) only final punctuation can end a sentence, and no
    # gap between tokens needs looking at.
    lines = "\n" in text
    width = max((len(line.strip()) for line in text.splitlines()), default=0) if lines else 0
    for i, token in enumerate(tokens):
        if current:
            starts_new = ended and token.text not in _CLOSING and _looks_like_start(token.text)
            gap = text[current[-1].end : token.start] if lines else ""
            deliberate_break = (
                not ended and "\n" in gap and _deliberate_break(text, current[-1], token, width)
            )
            if starts_new or (lines and _BLANK_LINE.search(gap)) or deliberate_break:
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


def _deliberate_break(text: str, last: Token, first: Token, width: int) -> bool:
    """Whether the line break between ``last`` and ``first`` was typed, not wrapped."""
    if _LIST_ITEM.match(text, first.start) or width < _NARROWEST_WRAP:
        return True
    line_start = text.rfind("\n", 0, last.end) + 1
    line = text[line_start : last.end].strip()
    next_word_end = len(text)
    for end, char in enumerate(text[first.start :], start=first.start):
        if char.isspace():
            next_word_end = end
            break
    return len(line) + 1 + (next_word_end - first.start) <= width


def _looks_like_start(word: str) -> bool:
    first = word[0]
    return first.isupper() or first.isdigit() or first in {'"', "“", "'", "(", "‘", "«"}
