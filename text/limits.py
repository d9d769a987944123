"""Defaults that the service's settings and ``tagserve tag`` share, stated once (torch-free,
so the settings can import them)."""

from __future__ import annotations

# Longer sentences are tagged in pieces of this many tokens (TAGSERVE_MAX_SENTENCE_TOKENS).
MAX_SENTENCE_TOKENS = 200
# Words whose input vectors each model memoises, about 0.5 KB a word (TAGSERVE_CACHE_WORDS).
CACHE_WORDS = 50_000
