"""Turn CoNLL token lists back into plain text, as a journalist would have typed it.

Used by the tokenizer-agreement and end-to-end accuracy scripts. Returns the text and the
character span of every token in it, so gold entities can be compared by offsets.
"""

from __future__ import annotations

_NO_SPACE_BEFORE = {
    ",",
    ".",
    ";",
    ":",
    "!",
    "?",
    ")",
    "]",
    "}",
    "%",
    "n't",
    "'s",
    "'S",
    "'re",
    "'m",
    "'ve",
    "'ll",
    "'d",
    "...",
}
_NO_SPACE_AFTER = {"(", "[", "{", "$"}


def detokenize(tokens: list[str]) -> tuple[str, list[tuple[int, int]]]:
    """Join tokens with spaces except where punctuation attaches; returns text and spans."""
    parts: list[str] = []
    spans: list[tuple[int, int]] = []
    position = 0
    open_quote = False
    previous = ""
    for i, token in enumerate(tokens):
        attach = i == 0 or token in _NO_SPACE_BEFORE or previous in _NO_SPACE_AFTER
        if token == '"':
            # Alternate: an opening quote attaches to what follows, a closing one to what precedes.
            attach = i == 0 or (open_quote is not False and open_quote)
            open_quote = not open_quote
        elif previous == '"' and open_quote:
            attach = True
        if not attach:
            parts.append(" ")
            position += 1
        parts.append(token)
        spans.append((position, position + len(token)))
        position += len(token)
        previous = token
    return "".join(parts), spans
