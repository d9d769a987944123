"""Raw text → tokens with code-point offsets, in the CoNLL-2003 / ATIS style the models saw.

One compiled regular expression; alternatives are tried in order at each position. Rules:
URLs, e-mail addresses, @handles and #hashtags whole (a hashtag needs a letter: "#1" is two
tokens); abbreviations ("U.S.", "Mr.", "vs.", initials before a
name) whole; numbers, dates and scores ("1,000", "3.5", ".778", "1996-08-22", "6-4",
"1/2") whole, and a list number at a line start ("1."); at the very end of a text an
abbreviation gives up its period ("in the U.S ."), as CoNLL writes it; "--" and "..." stay whole;
"n't" and the clitics "'s 're 'm 've 'll 'd" split off; words keep inner hyphens and
apostrophes ("pro-democracy", "O'Brien"); runs of CJK letters stay together; every other
non-space character is a token of its own. The ``atis`` style keeps contractions whole
("i'd", "what's"), as that data set does. Whitespace of every kind (and zero-width format
characters) separates tokens and is never part of one, so
``text[token.start:token.end] == token.text`` always holds.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from tagserve.model.card import TokenizerStyle

_ABBREVIATIONS = (
    "Mr|Mrs|Ms|Dr|St|Jr|Sr|Inc|Corp|Co|Ltd|Plc|vs|Gen|Gov|Sen|Rep|Lt|Col|Capt|Sgt|Prof|Rev|"
    "Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec|No|Mt|Ft|Bros|Messrs|Adm|Cmdr|Maj|Gens|"
    "approx|etc|Dept|Univ|Ave|Blvd|Calif|Mass|Conn|Wash|Penn|Pa|Va|Fla|Ill|Mich|Minn|Tenn|Tex"
)
_CLITIC = r"(?:[sSmMdD]|re|RE|ve|VE|ll|LL)(?![^\W_])"
_LETTER = r"[^\W\d_]"
# Combining marks (accents typed as a separate code point) belong to the letter before them.
_MARK = "[\u0300-\u036f\u0483-\u0489\u0591-\u05bd\u0610-\u061a\u064b-\u065f\u0900-\u0903\u093a-\u094f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]"  # noqa: E501
# Zero-width format characters separate tokens like spaces do, and belong to none.
_INVISIBLE = "\u200b-\u200d\u2060\ufeff"
_ALNUM = r"[^\W_]"
_CONLL = rf"""
    (?P<url>(?:https?://|www\.)[^\s<>"]*[^\s<>".,;:!?)\]}}'])
  | (?P<email>[\w.+-]+@[\w-]+(?:\.[\w-]+)+)
  | (?P<handle>(?<![\w@])@\w+)
  | (?P<hashtag>(?<![\w#&])\#\w*{_LETTER}\w*)
  | (?P<final_abbrev>(?:{_LETTER}\.)+{_LETTER}(?=\.\s*$)|(?:{_ABBREVIATIONS})(?=\.\s*$))
  | (?P<abbrev>(?:{_LETTER}\.){{2,}}
      |(?:{_ABBREVIATIONS}|st|mr|mrs|ms|dr|jr|vs)\.(?!{_ALNUM})
      |[A-Z]\.(?=\s+[A-Z]))
  | (?P<listnumber>(?<![^\n])\d{{1,3}}\.(?=[^\S\n]))
  | (?P<number>(?:\d+|(?<!\S)\.\d+)(?:[.,:/-]\d+)*(?!{_ALNUM}|-{_LETTER}))
  | (?P<negated>{_LETTER}+?(?=n't(?!{_ALNUM})))
  | (?P<nt>n't(?!{_ALNUM}))
  | (?P<clitic>['’]{_CLITIC})
  | (?P<word>{_ALNUM}(?:{_ALNUM}|{_MARK}|[-&](?={_ALNUM})|['’](?!{_CLITIC})(?={_LETTER}))*)
  | (?P<ellipsis>\.\.\.+|--+)
  | (?P<other>[^\s{_INVISIBLE}]{_MARK}*)
"""
# ATIS keeps clitics attached: drop the splitting rules and let words keep any apostrophe.
_ATIS = (
    _CONLL.replace(f"  | (?P<negated>{_LETTER}+?(?=n't(?!{_ALNUM})))\n", "")
    .replace(f"  | (?P<nt>n't(?!{_ALNUM}))\n", "")
    .replace(f"  | (?P<clitic>['’]{_CLITIC})\n", "")
    .replace(f"['’](?!{_CLITIC})(?={_LETTER})", f"['’](?={_LETTER})")
)
# One pattern per style a model card may name (tagserve.model.card.TokenizerStyle).
_PATTERNS: dict[TokenizerStyle, re.Pattern[str]] = {
    "conll": re.compile(_CONLL, re.VERBOSE),
    "atis": re.compile(_ATIS, re.VERBOSE),
}
STYLES = tuple(_PATTERNS)
# Tokens that name a place on the web or an account, never a person or a place in the text:
# the pipeline keeps them out of entities.
_IDENTIFIER = re.compile(
    rf"(?:https?://|www\.)\S+|[\w.+-]+@[\w-]+(?:\.[\w-]+)+|@\w+|\#\w*{_LETTER}\w*"
)
# A word of letters with one of these after it is two tokens under every rule (none of them
# joins a letter to one of these), so such a chunk also skips the big pattern.
_TRAILING = frozenset(',;:!?)"')
# Words that keep a following period ("Mr.", and those the ``abbrev`` rule names in lower case).
_KEEP_PERIOD = frozenset(_ABBREVIATIONS.split("|")) | {"st", "mr", "mrs", "ms", "dr", "jr", "vs"}
# Runs of non-separating characters: no token crosses one's edge.
_CHUNKS = re.compile(f"[^\\s{_INVISIBLE}]+")


class Token(NamedTuple):
    """A token and where it sits in the input: ``text == source[start:end]`` (code points).
    A named tuple: a request makes one per word, and a frozen dataclass costs three times as
    much to build."""

    text: str
    start: int
    end: int


# The named tuple's own constructor is a Python function; building the tuple directly is the
# same object at a third of the cost (a request makes one per word).
_new_token = tuple.__new__


def tokenize(text: str, style: TokenizerStyle = "conll") -> list[Token]:
    """Split ``text`` into tokens in ``style`` (``conll`` or ``atis``); never raises."""
    pattern = _PATTERNS.get(style)
    if pattern is None:
        raise ValueError(f"unknown tokenizer style {style!r}: expected one of {', '.join(STYLES)}")
    tokens = []
    for chunk in _CHUNKS.finditer(text):
        piece = chunk.group()
        if len(piece) == 1 or piece.isalpha() or piece.isdecimal():
            # One character, letters only (every rule but ``word`` needs a digit, a period or
            # an apostrophe) or decimal digits only (``number``, as ``\d`` means Unicode
            # decimal digits): one token. Most words take this path past the big pattern.
            tokens.append(_new_token(Token, (piece, chunk.start(), chunk.end())))
            continue
        word, last = piece[:-1], piece[-1]
        if word.isalpha() and (
            last in _TRAILING or (last == "." and len(word) > 1 and word not in _KEEP_PERIOD)
        ):
            # "Paris," or "said.": the word, then the mark.
            start = chunk.start()
            split = start + len(word)
            tokens.append(_new_token(Token, (word, start, split)))
            tokens.append(_new_token(Token, (last, split, split + 1)))
            continue
        # The full pattern, token by token from the chunk's start (with the whole text visible
        # to lookarounds). Inside a chunk some rule (at worst ``other``, any character a chunk
        # holds) matches at every position, so matching there is what a search would find,
        # without searching on past the chunk for a token that is not its own.
        position, end = chunk.start(), chunk.end()
        while position < end:
            match = pattern.match(text, position)
            assert match is not None and match.end() > position
            tokens.append(_new_token(Token, (match.group(), position, match.end())))
            position = match.end()
    return tokens


def is_identifier(token: str) -> bool:
    """Whether a token is a URL, an e-mail address, an @handle or a #hashtag."""
    if "@" not in token and "#" not in token and not token.startswith(("http", "www.")):
        return False  # every identifier has one of these: most words skip the pattern
    return len(token) > 1 and _IDENTIFIER.fullmatch(token) is not None


def may_hold_identifiers(text: str) -> bool:
    """False when no token of ``text`` can be an identifier (it has none of the marks every
    identifier needs): one check per text instead of one per token."""
    return "@" in text or "#" in text or "http" in text or "www." in text


def tokenize_by_pattern(text: str, style: TokenizerStyle = "conll") -> list[Token]:
    """The reference: the full pattern over the whole text (what :func:`tokenize` equals)."""
    return [Token(m.group(), m.start(), m.end()) for m in _PATTERNS[style].finditer(text)]
