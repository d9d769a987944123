"""``tagserve tag``: tag raw text lines in batches and write JSON lines, without HTTP."""

from __future__ import annotations

import sys
from collections.abc import Callable
from itertools import islice
from typing import TextIO

import orjson

from tagserve.model.artifact import ArtifactError, load, resolve
from tagserve.model.predictor import Predictor
from tagserve.text.limits import CACHE_WORDS, MAX_SENTENCE_TOKENS
from tagserve.text.pipeline import build_results, model_inputs, plan_text


def tag_lines(
    source: TextIO,
    sink: TextIO,
    model: str,
    batch_size: int,
    device: str = "cpu",
    progress: Callable[[int], None] | None = None,
) -> int:
    """One JSON object per input line, shaped like one ``results`` entry of ``POST /tag``.

    ``progress``, if given, is called with the number of lines after each batch is written.
    """
    try:
        bundle = load(resolve(model), device)
    except ArtifactError as error:
        print(f"tagserve: error: {error}", file=sys.stderr)
        return 2
    predictor = Predictor(bundle, batch_size=batch_size, cache_words=CACHE_WORDS)
    lines = (line.rstrip("\n") for line in source)
    while chunk := list(islice(lines, batch_size)):
        sink.write(tag_batch(predictor, chunk))
        if progress is not None:
            progress(len(chunk))
    return 0


def tag_batch(predictor: Predictor, lines: list[str]) -> str:
    """The JSON lines (each ending in a newline) of one batch of input lines.

    The batch is what the predictor sees at once, so the same lines in the same batches give
    the same bytes in any process (``tagserve tag --workers N`` relies on it).
    """
    bundle = predictor.bundle
    tokenizer, scheme = bundle.card.tokenizer, bundle.labels.scheme
    plans = [plan_text(line, tokenizer, MAX_SENTENCE_TOKENS) for line in lines]
    tagged = predictor.predict(model_inputs(plans, tokenizer))
    results = build_results(plans, tagged, scheme, intents=bool(bundle.intents))
    return "".join(orjson.dumps(result).decode() + "\n" for result in results)
