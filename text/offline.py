"""``tagserve tag``'s local engine in this process: read blocks of records, tag each with
:func:`~tagserve.text.answers.tag_block`, write them in input order, without HTTP."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from tagserve.model.artifact import load, resolve
from tagserve.model.predictor import Predictor
from tagserve.text.answers import Counts, Job, tag_block
from tagserve.text.limits import CACHE_WORDS, MAX_SENTENCE_TOKENS
from tagserve.text.records import Source, read_blocks
from tagserve.text.writer import Writer

# The server's defaults (tests/test_deploy_defaults.py checks both come from text/limits.py).
__all__ = ["CACHE_WORDS", "MAX_SENTENCE_TOKENS", "load_predictor", "tag_records"]


def tag_records(
    source: Source,
    writer: Writer,
    job: Job,
    model: str,
    batch_size: int,
    device: str = "cpu",
    progress: Callable[[int], None] | None = None,
    stdin: TextIO | None = None,
) -> Counts:
    """Tag every record of ``source`` into ``writer``, one batch at a time; ``progress``, if
    given, is called with the number of records after each batch is written. Raises
    :class:`~tagserve.model.artifact.ArtifactError` when the model cannot load and
    :class:`~tagserve.text.answers.RecordError` when the input cannot be read as asked."""
    predictor = load_predictor(resolve(model), device, batch_size)
    counts = Counts()
    for block in read_blocks(source, batch_size, stdin):
        tagged = tag_block(predictor, block, job)
        writer.write(tagged.output)
        done = tagged.counts()
        counts.add(done)
        if progress is not None:
            progress(done.records)
    return counts


def load_predictor(path: Path, device: str, batch_size: int) -> Predictor:
    """The model at ``path`` with the server's word cache, batching ``batch_size`` sentences."""
    return Predictor(load(path, device), batch_size=batch_size, cache_words=CACHE_WORDS)
