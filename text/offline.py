"""``tagserve tag``: tag raw text lines in batches and write JSON lines, without HTTP."""

from __future__ import annotations

import asyncio
import sys
from itertools import islice
from typing import TextIO

import orjson

from tagserve.model.artifact import ArtifactError, load, resolve
from tagserve.model.predictor import Predictor, TaggedSentence
from tagserve.text.pipeline import ModelProfile, plan_text, tag_plans

MAX_SENTENCE_TOKENS = 200


def tag_lines(source: TextIO, sink: TextIO, model: str, batch_size: int) -> int:
    """One JSON object per input line, shaped like one ``results`` entry of ``POST /tag``."""
    try:
        path = resolve(model)
        bundle = load(path)
    except ArtifactError as error:
        print(f"tagserve: error: {error}", file=sys.stderr)
        return 2
    profile = ModelProfile.of(path.name, bundle)
    predictor = Predictor(bundle, batch_size=batch_size, cache_words=50_000)

    async def run_model(sentences: list[list[str]]) -> list[TaggedSentence]:
        return predictor.predict(sentences)

    lines = (line.rstrip("\n") for line in source)
    while chunk := list(islice(lines, batch_size)):
        plans = [plan_text(line, profile, MAX_SENTENCE_TOKENS) for line in chunk]
        for result in asyncio.run(tag_plans(plans, profile, run_model)):
            sink.write(orjson.dumps(result).decode() + "\n")
    return 0
