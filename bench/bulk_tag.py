"""Bulk tagging speed: lines/s of ``tagserve tag`` for several ``--workers`` in one run.

python -m bench.bulk_tag [--lines 20000] [--model ner] [--workers 1,2]

Writes a temporary file of N lines made from hand-written sentences (no data set), tags it
once per worker count with the real command (so start-up, model loading and writing the
JSON lines are in the figure), and checks that every run wrote the same bytes as the first.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SENTENCES = [
    "Harry Potter and Hermione Granger invented a new spell.",
    "Angela Merkel visited Paris on Tuesday to meet Emmanuel Macron.",
    "The European Commission fined Google 2.4 billion euros in Brussels.",
    "show me flights from boston to denver next monday morning",
    "Shares of Apple rose 3 percent after the company reported record sales in China.",
    "Lionel Messi scored twice as Barcelona beat Real Madrid 3-1 at the Camp Nou.",
    "I would like a cheap hotel near the Eiffel Tower for two nights in June.",
    "The United Nations said on Friday that aid had reached Aleppo.",
    "",
    "Dr. Smith of Johns Hopkins University presented the study in New York. It was well received.",
    "Toyota and Honda cut output in Japan as chip shortages hit the car industry.",
    "what is the cheapest fare from pittsburgh to atlanta on delta airlines",
]


def write_lines(path: Path, count: int) -> None:
    """``count`` lines cycling through the sentences, each made distinct by a number."""
    with path.open("w", encoding="utf-8") as file:
        for i in range(count):
            sentence = SENTENCES[i % len(SENTENCES)]
            file.write(f"{sentence} ({i})\n" if sentence else "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=20_000)
    parser.add_argument("--model", default="ner")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    args = parser.parse_args()
    counts = [int(n) for n in args.workers.split(",")]
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(root)}
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "in.txt"
        write_lines(source, args.lines)
        digests: list[str] = []
        print(f"{args.lines} lines, model {args.model}, batch size {args.batch_size}")
        print(f"{'workers':>7} {'seconds':>8} {'lines/s':>8}  same output as the first")
        for workers in counts:
            target = Path(folder) / f"out-{workers}.jsonl"
            command = [
                sys.executable, "-m", "tagserve", "tag", str(source), "--model", args.model,
                "--batch-size", str(args.batch_size), "--workers", str(workers),
                "--output", str(target),
            ]  # fmt: skip
            started = time.perf_counter()
            # stderr is a pipe, so no progress bar in the timing.
            done = subprocess.run(command, env=env, stderr=subprocess.PIPE, text=True)
            seconds = time.perf_counter() - started
            if done.returncode != 0:
                sys.exit(f"--workers {workers} failed: {done.stderr.strip()}")
            digests.append(hashlib.sha256(target.read_bytes()).hexdigest())
            same = "yes" if digests[-1] == digests[0] else "NO"
            print(f"{workers:>7} {seconds:>8.1f} {args.lines / seconds:>8.0f}  {same}")


if __name__ == "__main__":
    main()
