"""Ablation: train the same config with one change per variant and tabulate dev/test F1.

    python -m bench.ablation training/configs/atis.toml --out runs/ablation-atis \
        --set training.epochs=30 --jobs 2

Each variant is ``tagserve train CONFIG --set <change>`` with the common ``--set`` options
appended, so the only difference between rows is the named change. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

VARIANTS: dict[str, list[str]] = {
    "BiLSTM-CNN-CRF (baseline)": [],
    "BiGRU-CNN-CRF": ["model.rnn=gru"],
    "BiLSTM-CNN-softmax": ["model.decoder=softmax"],
    "LSTM-CNN-CRF (one direction)": ["model.bidirectional=false"],
    "BiLSTM-CRF (no char encoder)": ["model.char_encoder=none"],
}


def run_variant(config: Path, out: Path, name: str, changes: list[str], common: list[str]) -> dict:
    """Train one variant with one torch thread; returns its summary line plus wall time."""
    slug = "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")
    command = [
        sys.executable,
        "-m",
        "tagserve",
        "train",
        str(config),
        "--output",
        str(out / slug),
        "--threads",
        "1",
        "--no-progress",
    ]
    for change in [*common, *changes]:
        command += ["--set", change]
    log = out / f"{slug}.log"
    finished = _finished_summary(log)
    if finished is not None:  # resume: a variant trained to the end is not trained again
        return finished
    started = time.monotonic()
    with log.open("w") as handle:
        subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, check=True)
    summary = json.loads(log.read_text().strip().splitlines()[-1])
    summary["minutes"] = round((time.monotonic() - started) / 60, 1)
    summary["change"] = " ".join(changes) or "—"
    (out / f"{slug}.json").write_text(json.dumps(summary))
    return summary


def _finished_summary(log: Path) -> dict | None:
    """The summary saved by an earlier, completed run of this variant, if any."""
    saved = log.with_suffix(".json")
    return json.loads(saved.read_text()) if saved.is_file() else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--set", dest="common", action="append", default=[])
    parser.add_argument(
        "--jobs", type=int, default=2, help="variants trained at once (1 thread each)"
    )
    parser.add_argument(
        "--only", action="append", default=None, help="run only these variant names"
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    variants = {k: v for k, v in VARIANTS.items() if not args.only or k in args.only}
    with ThreadPoolExecutor(args.jobs) as pool:
        futures = {
            name: pool.submit(run_variant, args.config, args.out, name, changes, args.common)
            for name, changes in variants.items()
        }
        results = {name: future.result() for name, future in futures.items()}
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    print(f"config: {args.config}  common: {' '.join(args.common) or '—'}")
    print("| variant | change | best epoch | dev F1 | test F1 | minutes |")
    print("|---|---|---:|---:|---:|---:|")
    for name, r in results.items():
        print(
            f"| {name} | `{r['change']}` | {r['best_epoch']} | {r['dev_f1']:.2f} | "
            f"{r['test_f1']:.2f} | {r['minutes']} |"
        )


if __name__ == "__main__":
    main()
