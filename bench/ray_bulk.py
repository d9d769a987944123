"""Bulk tagging here and on Ray: records/s and tokens/s of ``tagserve tag`` with the local
engine (``--workers 1`` and ``2``) and the Ray engine (1 and 2 actors), the fixed cost of
starting a local Ray cluster, and peak memory, in one run.

python -m bench.ray_bulk [--texts 20000] [--model ner] [--batch-size 64]

The corpus: CoNLL-2003 test's 3,453 sentences as typed text (bench.detok), cycled to --texts
texts, each a JSON line ``{"id", "text", "doc"}`` in a temporary folder (never in the repo).
Every configuration runs the real command twice: on one record (its fixed cost: Python,
torch, the model, and for Ray joining the cluster and starting the actors) and on the whole
corpus. ``wall`` rates divide by the whole run; ``writing`` rates by the time from the output
file's first bytes to its last (the tagging once everything is up, watched every 20 ms);
``steady`` rates by the difference of the two runs. Ray's runs join one local cluster that
this script starts (``ray.init``, timed) and keeps for all of them. Memory: the peak over the
run of the PSS (and RSS) summed over every process this script started (the command, its
workers, and for Ray the whole cluster: GCS, raylet, workers, actors), sampled every 0.25 s
from /proc. The driver's own CPU seconds per record bound how fast one process can write one
output file for a whole cluster.
"""

from __future__ import annotations

import argparse
import json
import math
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
    writing_seconds: float  # from the first output byte to the last


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


def run(args: list[str], output: Path) -> Run:
    """``tagserve tag ARGS --summary``, timed, its peak memory sampled meanwhile, and the
    times its ``output`` file got its first and its last bytes."""
    command = [sys.executable, "-m", "tagserve", "tag", *args, "--summary"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    peak = [0, 0]
    sizes: list[tuple[float, int]] = []
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.25):
            pss, rss = memory_kb(os.getpid())
            peak[0], peak[1] = max(peak[0], pss), max(peak[1], rss)

    def watch() -> None:
        while not done.wait(0.02):
            size = output.stat().st_size if output.exists() else 0
            if not sizes or size != sizes[-1][1]:
                sizes.append((time.perf_counter(), size))

    output.unlink(missing_ok=True)
    sampler = threading.Thread(target=sample, daemon=True)
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    sampler.start()
    stderr = process.stderr.read() if process.stderr else ""
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    done.set()
    sampler.join()
    watcher.join()
    written = [moment for moment, size in sizes if size > 0]
    writing = written[-1] - written[0] if len(written) > 1 else float("nan")
    found = [m for line in stderr.splitlines() if (m := SUMMARY.match(line))]
    if process.returncode != 0 or not found:
        sys.exit(f"{' '.join(args)} failed ({process.returncode}):\n{stderr[-3000:]}")
    records, _, tokens = (int(n) for n in found[-1].groups())
    cpu = usage.ru_utime + usage.ru_stime
    return Run(seconds, cpu, records, tokens, peak[0] / 1024, peak[1] / 1024, writing)


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
        print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
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
            one_out, out = folder / "one-out.jsonl", folder / f"out-{len(outputs)}.jsonl"
            one = run(
                [str(folder / "one.jsonl"), *common, *options, "--output", str(one_out)], one_out
            )
            full = run([str(corpus), *common, *options, "--output", str(out)], out)
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
            f"{'configuration':<18} {'wall s':>6} {'fixed s':>7} {'rec/s':>6} {'tok/s':>6} "
            f"{'writing s':>9} {'rec/s':>6} {'tok/s':>6} {'steady rec/s':>12} "
            f"{'peak PSS MB':>11} {'peak RSS MB':>11} {'driver us/rec':>13}  same as local 1"
        )
        rates: dict[str, dict[str, float]] = {"wall": {}, "writing": {}, "steady": {}}
        for label, (one, full) in results.items():
            per_token = full.tokens / full.records
            rates["wall"][label] = full.records / full.seconds
            rates["writing"][label] = full.records / full.writing_seconds
            # Too small a corpus for its fixed cost to stand out gives no steady rate (nan).
            work = full.seconds - one.seconds
            rates["steady"][label] = full.records / work if work > 0.1 * full.seconds else math.nan
            print(
                f"{label:<18} {full.seconds:>6.1f} {one.seconds:>7.1f} "
                f"{rates['wall'][label]:>6.0f} {rates['wall'][label] * per_token:>6.0f} "
                f"{full.writing_seconds:>9.1f} {rates['writing'][label]:>6.0f} "
                f"{rates['writing'][label] * per_token:>6.0f} {rates['steady'][label]:>12.0f} "
                f"{full.peak_pss_mb:>11.0f} {full.peak_rss_mb:>11.0f} "
                f"{1e6 * (full.cpu_seconds - one.cpu_seconds) / full.records:>13.0f}  "
                f"{'yes' if outputs[label] == reference else 'NO'}"
            )
        print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        line_bytes = len(reference) / args.texts
        in_bytes = corpus.stat().st_size / args.texts
        print(f"bytes per record: {in_bytes:.0f} in, {line_bytes:.0f} out (JSON lines)")
        for name, by in rates.items():
            ray2, ray1 = by["ray --actors 2"], by["ray --actors 1"]
            print(
                f"targets ({name}): ray 2 actors / local 2 workers = "
                f"{ray2 / by['local --workers 2']:.2f} (target >= 0.8); "
                f"ray 2 actors / ray 1 actor = {ray2 / ray1:.2f} (target >= 1.7)"
            )


if __name__ == "__main__":
    main()
