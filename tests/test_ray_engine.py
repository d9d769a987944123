"""``tagserve tag --engine ray`` and :func:`tag_dataset` on a real local Ray cluster, started
once per test session (``ray.init(num_cpus=2)``): files in and out with every field kept,
POST /tag's answers, a killed actor, bad records, a missing text field."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tagserve.text.answers import Job, RecordError
from tagserve.text.offline import tag_records
from tagserve.text.records import find_input, find_output, make_job
from tagserve.text.writer import Writer
from tests.records_helpers import (
    SUMMARY,
    TEXTS,
    many_records,
    read_jsonl,
    run_tag,
    service_results,
    write_jsonl,
)

if importlib.util.find_spec("ray") is None:
    message = "ray is not installed (bash scripts/install.sh ray)"
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message, allow_module_level=True)

import ray
import ray.data

from tagserve.text import ray_job
from tagserve.text.ray_engine import RayTagger, tag_dataset

# Starts a Ray cluster and tagserve commands. Ray's own warnings (an operator with fewer
# blocks than actors, ...) are advice, not failures.
pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::UserWarning")]


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[str]:
    """A two-CPU local cluster for the whole session; its address, for commands to join."""
    context = ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    data = ray.data.DataContext.get_current()
    data.execution_options.preserve_order = True
    data.enable_progress_bars = False
    yield context.address_info["gcs_address"]
    ray.shutdown()


def run_job(source: Path, target: str, model: Path, tokens: bool = False, **options: Any) -> Any:
    """``ray_job.run`` on the session's cluster, with two actors unless told."""
    found = find_input(str(source))
    where = find_output(target, found)
    options = {"batch_size": 8, "actors": 2, **options}
    job = make_job(found, where, tokens=tokens)
    return ray_job.run(found, where, job, model=str(model), **options)


def test_tag_dataset_gives_the_services_answers(ray_cluster: str, tiny_artifact: Path) -> None:
    texts = [f"{TEXTS[i % len(TEXTS)]} {i}" for i in range(200)]
    ds = ray.data.from_items(
        [{"id": i, "text": t} for i, t in enumerate(texts)], override_num_blocks=8
    )
    tagged = tag_dataset(ds, model=tiny_artifact, tokens=True, actors=(1, 2), batch_size=16)
    batches = tagged.iter_batches(batch_format="pyarrow", batch_size=None)
    rows = pa.concat_tables(batches).to_pylist()
    assert [row["id"] for row in rows] == list(range(200))
    answers = [{"tokens": r["tokens"], "entities": r["entities"]} for r in rows]
    assert answers == service_results(tiny_artifact.parent, texts)
    assert {row["error"] for row in rows} == {None}


def test_files_in_and_out_keep_every_field(
    ray_cluster: str, tiny_artifact: Path, tmp_path: Path
) -> None:
    records = many_records(300)
    source = tmp_path / "in.jsonl"
    write_jsonl(source, records)
    counts = run_job(source, str(tmp_path / "ray.jsonl"), tiny_artifact)
    # The local engine writes the same bytes: the engines differ only in where they run.
    local = find_input(str(source))
    with Writer(find_output(str(tmp_path / "local.jsonl"), local)) as writer:
        tag_records(local, writer, Job("jsonl", "jsonl"), str(tiny_artifact), batch_size=8)
    assert (tmp_path / "ray.jsonl").read_bytes() == (tmp_path / "local.jsonl").read_bytes()
    tagged = read_jsonl(tmp_path / "ray.jsonl")
    assert [{k: r[k] for k in records[0]} for r in tagged] == records
    assert (counts.records, counts.errors) == (300, 0)

    # JSON lines -> a Parquet folder (part files in input order) -> one Parquet file.
    folder = tmp_path / "parts.parquet"
    counts = run_job(source, f"{folder}/", tiny_artifact, tokens=True)
    assert counts.records == 300
    assert all(p.name.startswith("part-") for p in folder.iterdir())
    table = pq.read_table(folder)
    assert table.column("meta").to_pylist() == [r["meta"] for r in records]
    assert table.column("entities").to_pylist() == [r["entities"] for r in tagged]
    assert "__tagserve_tokens" not in table.column_names
    assert counts.tokens == sum(len(t) for t in table.column("tokens").to_pylist())

    plain = tmp_path / "plain"
    plain.mkdir()
    for part in range(3):
        rows = pa.Table.from_pylist(records[part * 100 : (part + 1) * 100])
        pq.write_table(rows, plain / f"{part}.parquet", row_group_size=30)
    run_job(plain, str(tmp_path / "out.parquet"), tiny_artifact)
    out = pq.read_table(tmp_path / "out.parquet")
    assert out.select(list(records[0])).to_pylist() == records
    assert out.column("entities").to_pylist() == [r["entities"] for r in tagged]

    # Parquet -> a JSON-lines folder.
    run_job(plain, f"{tmp_path / 'json.jsonl'}/", tiny_artifact)
    parts = sorted((tmp_path / "json.jsonl").iterdir())
    assert [r for p in parts for r in read_jsonl(p)] == tagged


def test_a_killed_actor_is_replaced_and_every_record_written_once(
    ray_cluster: str, tiny_artifact: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "killed"

    class DiesOnce(RayTagger):
        """The first actor to reach its third batch dies there, mid-run, its earlier
        batches already passed on; the job must carry on."""

        batches = 0

        def __call__(self, batch: pa.Table) -> pa.Table:
            self.batches += 1
            if self.batches == 3 and not marker.exists():
                marker.write_text(str(os.getpid()))
                os._exit(1)
            return super().__call__(batch)

    records = [{"id": i, "text": f"{TEXTS[i % len(TEXTS)]} {i}"} for i in range(600)]
    source = tmp_path / "in.jsonl"
    write_jsonl(source, records)
    for target, folder in ((tmp_path / "out.jsonl", False), (tmp_path / "parts", True)):
        marker.unlink(missing_ok=True)
        where = f"{target}/" if folder else str(target)
        # Blocks of 4 KiB: the 600 records are spread over both actors.
        counts = run_job(source, where, tiny_artifact, tagger=DiesOnce, block_bytes=4096)
        assert marker.exists(), "no actor was killed"
        written = sorted(target.iterdir()) if folder else [target]
        ids = [r["id"] for path in written for r in read_jsonl(path)]
        assert ids == list(range(600)), target  # each record once, in order
        assert counts.records == 600


def test_bad_records_are_reported_and_counted(
    ray_cluster: str, tiny_artifact: Path, tmp_path: Path
) -> None:
    source = tmp_path / "in.jsonl"
    lines = [
        '{"id": 0, "text": "Harry Potter"}',
        '{"id": 1, "text": null}',
        '{"id": 2, "text": 3.5}',
        '{"id": 3, "text": "' + "x" * 61 + '"}',
        '{"id": 4, "other": "no text"}',
        "{broken",
        '{"id": 6, "text": "London"}',
    ]
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    target = tmp_path / "out.jsonl"
    # The command joins the session's cluster and prints its summary line at the end.
    done = run_tag(
        str(source), "--engine", "ray", "--address", ray_cluster, "--actors", "1,2",
        "--model", str(tiny_artifact), "--max-text-chars", "60", "--output", str(target),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    summaries = [m for line in done.stderr.splitlines() if (m := SUMMARY.fullmatch(line))]
    assert len(summaries) == 1, done.stderr
    records, errors, tokens = (int(n) for n in summaries[0].groups())
    written = read_jsonl(target)
    assert (records, errors) == (7, 5)
    assert [r.get("id") for r in written] == [0, 1, 2, 3, 4, None, 6]
    assert [r["error"][:20] for r in written if "error" in r] == [
        "text: expected a str",
        "text: expected a str",
        "text: 61 characters ",
        "text: the record has",
        "not a JSON object: u",
    ]
    assert tokens == 3  # Harry, Potter, London


def test_a_missing_text_field_fails_before_any_work(ray_cluster: str, tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    write_jsonl(source, [{"id": 1, "text": "x"}])
    done = run_tag(str(source), "--engine", "ray", "--text-field", "body")
    # One line and no Ray log: no cluster was started, no model loaded.
    assert done.returncode == 2
    assert done.stderr == (
        f"tagserve: error: --text-field 'body': {source} has no such field; its fields: id, text\n"
    )
    # A GPU asked of a cluster without one: refused before the model is shipped.
    done = run_tag(str(source), "--engine", "ray", "--address", ray_cluster, "--device", "cuda")
    assert done.returncode == 2
    assert (
        done.stderr.splitlines()[-1] == "tagserve: error: --device cuda: the Ray cluster has no GPU"
    )
    ds = ray.data.from_items([{"id": 1, "text": "x"}])
    with pytest.raises(
        RecordError, match="text_field 'body': the dataset has no such field; its fields: id, text"
    ):
        tag_dataset(ds, text_field="body")
