"""Bulk tagging here and on Ray: records/s and tokens/s of ``tagserve tag`` with the local
engine (``--workers 1`` and ``2``) and the Ray engine (1 and 2 actors), the fixed cost of
starting a local Ray cluster, and peak memory, in one run.

python -m bench.ray_bulk [--texts 20000] [--model ner] [--batch-size 64]

The corpus: CoNLL-2003 test's 3,453 sentences as typed text (bench.detok), cycled to --texts
texts, each a JSON line ``{"id", "text", "doc"}`` in a temporary folder (never in the repo).
Every configuration runs the real command twice: on one record (its fixed cost: Python,
torch, the model, and for Ray joining the cluster and starting the actors) and on the whole
corpus. ``wall`` rates divide by the whole run; ``steady`` rates by the difference of the two
runs, which is what more records cost. Ray's runs join one local cluster that this script
starts (``ray.init``, timed) and keeps for all of them. Memory: the peak over the run of the
PSS (and RSS) summed over every process this script started (the command, its workers, and
for Ray the whole cluster: GCS, raylet, workers, actors), sampled every 0.25 s from /proc.
The driver's own CPU seconds per record bound how fast one process can write one output
file for a whole cluster.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from bench.detok import detokenize
from tagserve.training.config import data_dir
from tagserve.training.readers import read_dataset

ROOT = Path(__file__).resolve().parent.parent
SUMMARY = re.compile(r"tagserve tag: (\d+) records, (\d+) with an error, (\d+) tokens")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


@dataclass
class Run:
    seconds: float
    cpu_seconds: float  # the command's own process (the driver, for Ray)
    records: int
    tokens: int
    peak_pss_mb: float
    peak_rss_mb: float


def write_corpus(folder: Path, count: int, data: Path | None) -> Path:
    """``count`` texts cycling through CoNLL-2003 test's sentences, as JSON lines."""
    sentences = [e.tokens for e in read_dataset(data_dir(data) / "conll2003/test.txt")]
    texts = [detokenize(tokens)[0] for tokens in sentences]
    path = folder / "corpus.jsonl"
    with path.open("w", encoding="utf-8") as file:
        for i in range(count):
            record = {"id": i, "text": texts[i % len(texts)], "doc": f"test-{i // 20}"}
            file.write(json.dumps(record, ensure_ascii=False) + "\n")
    (folder / "one.jsonl").write_text(path.open(encoding="utf-8").readline(), encoding="utf-8")
    return path


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            tree.setdefault(parent, []).append(int(entry))
    return tree


def memory_kb(root: int) -> tuple[int, int]:
    """PSS and RSS (kB) summed over ``root``'s descendants (not ``root`` itself)."""
    tree, pss, rss = _children(), 0, 0
    stack = list(tree.get(root, []))
    while stack:
        pid = stack.pop()
        stack += tree.get(pid, [])
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    pss += int(line.split()[1])
            rss += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_KB
        except (OSError, ValueError, IndexError):
            continue
    return pss, rss


def run(args: list[str]) -> Run:
    """``tagserve tag ARGS --summary``, timed, its peak memory sampled meanwhile."""
    command = [sys.executable, "-m", "tagserve", "tag", *args, "--summary"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    peak = [0, 0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.25):
            pss, rss = memory_kb(os.getpid())
            peak[0], peak[1] = max(peak[0], pss), max(peak[1], rss)

    sampler = threading.Thread(target=sample, daemon=True)
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    sampler.start()
    stderr = process.stderr.read() if process.stderr else ""
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    done.set()
    sampler.join()
    found = [m for line in stderr.splitlines() if (m := SUMMARY.match(line))]
    if process.returncode != 0 or not found:
        sys.exit(f"{' '.join(args)} failed ({process.returncode}):\n{stderr[-3000:]}")
    records, _, tokens = (int(n) for n in found[-1].groups())
    cpu = usage.ru_utime + usage.ru_stime
    return Run(seconds, cpu, records, tokens, peak[0] / 1024, peak[1] / 1024)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=20_000)
    parser.add_argument("--model", default="ner")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args()
    common = ["--model", args.model, "--batch-size", str(args.batch_size)]
    with tempfile.TemporaryDirectory(prefix="ray-bulk-") as name:
        folder = Path(name)
        corpus = write_corpus(folder, args.texts, args.data_dir)
        print(
            f"{args.texts} texts (CoNLL-2003 test cycled), model {args.model}, batch size "
            f"{args.batch_size}, {os.cpu_count()} cores; torch threads: 1 per worker process "
            "or actor, torch's default in the command's process (--workers 1)"
        )
        configs: list[tuple[str, list[str]]] = [
            ("local --workers 1", ["--workers", "1"]),
            ("local --workers 2", ["--workers", "2"]),
        ]
        results: dict[str, tuple[Run, Run]] = {}
        outputs: dict[str, bytes] = {}

        def measure(label: str, options: list[str]) -> None:
            tag = label.split()[0] + label.split()[-1]
            one = run(
                [
                    str(folder / "one.jsonl"),
                    *common,
                    *options,
                    "--output",
                    str(folder / "one-out.jsonl"),
                ]
            )
            out = folder / f"out-{tag}.jsonl"
            full = run([str(corpus), *common, *options, "--output", str(out)])
            results[label] = (one, full)
            outputs[label] = out.read_bytes()
            print(
                f"  {label}: {full.seconds:.1f} s ({one.seconds:.1f} s for one record)", flush=True
            )

        for label, options in configs:
            measure(label, options)

        import ray

        before = memory_kb(os.getpid())
        started = time.perf_counter()
        context = ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
        cluster_seconds = time.perf_counter() - started
        time.sleep(2)  # let the raylet's prestarted workers settle before measuring it idle
        idle_pss = (memory_kb(os.getpid())[0] - before[0]) / 1024
        address = context.address_info["gcs_address"]
        try:
            for actors in (1, 2):
                label = f"ray --actors {actors}"
                measure(label, ["--engine", "ray", "--address", address, "--actors", str(actors)])
        finally:
            ray.shutdown()

        reference = outputs["local --workers 1"]
        print()
        print(f"Ray cluster start (ray.init, num_cpus={os.cpu_count()}): {cluster_seconds:.1f} s; "
              f"the idle cluster's PSS: {idle_pss:.0f} MB")  # fmt: skip
        print(
            f"{'configuration':<18} {'wall s':>7} {'fixed s':>7} {'rec/s':>7} {'tok/s':>7} "
            f"{'steady rec/s':>12} {'steady tok/s':>12} {'peak PSS MB':>11} {'peak RSS MB':>11} "
            f"{'driver CPU us/rec':>17}  same output as local 1"
        )
        steady: dict[str, float] = {}
        for label, (one, full) in results.items():
            # Too small a corpus for its fixed cost to stand out gives no steady rate (nan).
            work = full.seconds - one.seconds
            steady[label] = full.records / work if work > 0.1 * full.seconds else float("nan")
            per_token = full.tokens / full.records
            print(
                f"{label:<18} {full.seconds:>7.1f} {one.seconds:>7.1f} "
                f"{full.records / full.seconds:>7.0f} {full.tokens / full.seconds:>7.0f} "
                f"{steady[label]:>12.0f} {steady[label] * per_token:>12.0f} "
                f"{full.peak_pss_mb:>11.0f} {full.peak_rss_mb:>11.0f} "
                f"{1e6 * (full.cpu_seconds - one.cpu_seconds) / full.records:>17.0f}  "
                f"{'yes' if outputs[label] == reference else 'NO'}"
            )
        line_bytes = len(reference) / args.texts
        in_bytes = corpus.stat().st_size / args.texts
        print(f"bytes per record: {in_bytes:.0f} in, {line_bytes:.0f} out (JSON lines)")
        wall = {label: full.records / full.seconds for label, (_, full) in results.items()}
        for name, rates in (("steady", steady), ("wall", wall)):
            ray2, ray1, local2 = (
                rates["ray --actors 2"],
                rates["ray --actors 1"],
                rates["local --workers 2"],
            )
            print(
                f"targets ({name}): ray 2 actors / local 2 workers = {ray2 / local2:.2f} "
                f"(target >= 0.8); ray 2 actors / ray 1 actor = {ray2 / ray1:.2f} (target >= 1.7)"
            )


if __name__ == "__main__":
    main()
