"""``tagserve tag``: tag raw text lines in batches and write JSON lines, without HTTP."""

from __future__ import annotations

import sys
from itertools import islice
from typing import TextIO

import orjson

from tagserve.model.artifact import ArtifactError, load, resolve
from tagserve.model.predictor import Predictor
from tagserve.text.pipeline import build_results, model_inputs, plan_text

MAX_SENTENCE_TOKENS = 200


def tag_lines(source: TextIO, sink: TextIO, model: str, batch_size: int) -> int:
    """One JSON object per input line, shaped like one ``results`` entry of ``POST /tag``."""
    try:
        bundle = load(resolve(model))
    except ArtifactError as error:
        print(f"tagserve: error: {error}", file=sys.stderr)
        return 2
    predictor = Predictor(bundle, batch_size=batch_size, cache_words=50_000)
    tokenizer, scheme = bundle.card.tokenizer, bundle.labels.scheme
    lines = (line.rstrip("\n") for line in source)
    while chunk := list(islice(lines, batch_size)):
        plans = [plan_text(line, tokenizer, MAX_SENTENCE_TOKENS) for line in chunk]
        tagged = predictor.predict(model_inputs(plans, tokenizer))
        for result in build_results(plans, tagged, scheme, intents=bool(bundle.intents)):
            sink.write(orjson.dumps(result).decode() + "\n")
    return 0
