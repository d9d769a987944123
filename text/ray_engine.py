"""Tagging on Ray Data: the batch-inference pattern (a stateful callable class in
``map_batches`` on an actor pool), for ``tagserve tag --engine ray`` and for people who
already hold a :class:`ray.data.Dataset`::

    import ray
    from tagserve.text.ray_engine import tag_dataset

    ds = ray.data.read_parquet("s3://bucket/tickets/")
    tagged = tag_dataset(ds, model="ner", text_field="body", actors=(2, 16))
    tagged.write_parquet("s3://bucket/tickets-tagged/")

Each actor loads the model once (its files travel through the object store, so a model
directory that exists only on the driver's machine works on a cluster), sets its torch
threads, and tags whole batches with :func:`~tagserve.text.answers.tag_block`: the same
code, and so the same answers, as ``POST /tag`` and the local engine. Ray restarts an actor
that dies and retries its batch.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import ray
import ray.data

from tagserve.model.artifact_files import read_info, resolve
from tagserve.text.answers import ERROR_COLUMN, MAX_TEXT_CHARS, TOKENS_COLUMN, Job, tag_block
from tagserve.text.records import check_columns

# The column of raw lines that the readers of text-lines and JSON-lines files make.
LINE_COLUMN = "line"


@dataclass(frozen=True)
class ShippedModel:
    """An artifact directory's files in the object store (held by the driver while a job
    runs, so a restarted actor can fetch them again)."""

    name: str
    files: list[ray.ObjectRef]  # type: ignore[type-arg]  # one ref, in a list: not resolved by Ray
    intents: bool


def ship_model(model: str | Path) -> ShippedModel:
    """Check the artifact as far as can be done without torch, then put its files into the
    object store. Raises :class:`~tagserve.model.artifact.ArtifactError`."""
    path = resolve(str(model))
    info = read_info(path)
    files = {p.name: p.read_bytes() for p in path.iterdir() if p.is_file()}
    return ShippedModel(path.name, [ray.put(files)], bool(info.intents))


class RayTagger:
    """One actor of the pool: the model loaded once, then whole batches tagged."""

    def __init__(
        self,
        model: ShippedModel,
        job: Job,
        batch_size: int,
        device: str = "cpu",
        threads: int = 1,
        counts: bool = False,
    ) -> None:
        import torch

        from tagserve.text.offline import load_predictor

        torch.set_num_threads(threads)
        folder = Path(tempfile.mkdtemp(prefix=f"tagserve-{model.name}-"))
        try:
            for name, data in ray.get(model.files[0]).items():
                (folder / name).write_bytes(data)
            self.predictor = load_predictor(folder, device, batch_size)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        self.job = job
        self.counts = counts

    def __call__(self, batch: pa.Table) -> pa.Table:
        """Tag one batch; with ``counts``, add each record's tokens and error flag for the
        job's summary (the writer drops them)."""
        block = batch if self.job.input == "arrow" else batch.column(LINE_COLUMN).to_pylist()
        tagged = tag_block(self.predictor, block, self.job)
        if isinstance(tagged.output, list):
            table = pa.table({LINE_COLUMN: pa.array(tagged.output, pa.string())})
        else:
            table = tagged.output
        if self.counts:
            table = table.append_column(TOKENS_COLUMN, pa.array(tagged.tokens, pa.int64()))
            table = table.append_column(ERROR_COLUMN, pa.array(tagged.errors, pa.bool_()))
        return table


def tag_dataset(
    ds: ray.data.Dataset,
    model: str | Path = "ner",
    *,
    text_field: str = "text",
    tokens: bool = False,
    batch_size: int = 64,
    actors: int | tuple[int, int] = 1,
    threads: int = 1,
    device: str = "cpu",
    max_text_chars: int = MAX_TEXT_CHARS,
) -> ray.data.Dataset:
    """``ds`` with the answers of ``POST /tag`` beside every row: ``entities`` (and ``intent``
    for a model with an intent head, ``tokens`` when asked), or ``error`` for a row whose
    text is not a string or is over ``max_text_chars``. Lazy, like any Dataset transform.

    ``actors`` is a pool size or ``(min, max)`` for an autoscaling pool; each actor takes
    ``threads`` CPUs (and one GPU with ``device="cuda"``). A missing text field or a column
    an answer would overwrite raises :class:`~tagserve.text.answers.RecordError` at once.

    The Dataset's :class:`~ray.data.DataContext` rules the rest, as ``tagserve tag`` sets it:
    ``execution_options.preserve_order`` for row order; ``target_max_block_size`` (an actor
    takes a block at a time, and Ray's default blocks hold ~10,000 short texts: 256 KiB keeps
    every actor busy); ``wait_for_min_actors_s`` so the work starts once the pool is up.
    Leave the reads a CPU the actors do not hold (or read with ``num_cpus=0``).
    """
    job = Job("arrow", "arrow", text_field, tokens, max_text_chars)
    check_columns(ds.columns(), "the dataset", job, option="text_field")
    return map_tagger(ds, ship_model(model), job, batch_size, actors, threads, device)


def map_tagger(
    ds: ray.data.Dataset,
    model: ShippedModel,
    job: Job,
    batch_size: int,
    actors: int | tuple[int, int],
    threads: int,
    device: str,
    counts: bool = False,
    tagger: type[RayTagger] = RayTagger,
) -> ray.data.Dataset:
    """The ``map_batches`` step on an actor pool; ``tagger`` may be a subclass of
    :class:`RayTagger` (one that wraps its batches, to count or to inject a fault)."""
    low, high = (actors, actors) if isinstance(actors, int) else actors
    if not 1 <= low <= high:
        raise ValueError(f"actors must be N or MIN,MAX with 1 <= MIN <= MAX, got {actors}")
    options: dict[str, Any] = {"num_cpus": threads}
    if device == "cuda":
        options["num_gpus"] = 1
    return ds.map_batches(
        tagger,
        fn_constructor_kwargs={
            "model": model,
            "job": job,
            "batch_size": batch_size,
            "device": device,
            "threads": threads,
            "counts": counts,
        },
        batch_size=batch_size,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(min_size=low, max_size=high),
        **options,
    )
