"""Ablation: train the same config with one change per variant, several seeds each, and
tabulate dev and test F1 (mean ± standard deviation), lower-cased test beside.

    python -m bench.ablation training/configs/conll2003-ablation.toml --out runs/ablation-ner \\
        --seeds 1 2 3 --casing lower --jobs 2
    python -m bench.ablation training/configs/atis.toml --out runs/ablation-atis \\
        --set training.epochs=30 --only "BiGRU-CNN-CRF" --jobs 2

Each run is ``tagserve train CONFIG --set <common> --set <change> --set training.seed=S``,
so the only difference between rows is the named change. A run that finished before (its
summary saved beside its log) is not trained again, so an interrupted ablation resumes.
Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

VARIANTS: dict[str, list[str]] = {
    "BiLSTM-CNN-CRF (baseline)": [],
    "BiGRU-CNN-CRF": ["model.rnn=gru"],
    "LSTM-CNN-CRF (one direction)": ["model.bidirectional=false"],
    "BiLSTM-CNN-softmax": ["model.decoder=softmax"],
    "BiLSTM-CRF (no char encoder)": ["model.char_encoder=none"],
    "BiLSTM-LSTM-CRF (char BiLSTM)": ["model.char_encoder=lstm"],
    "BIO instead of BIOES": ['model.scheme="BIO"'],
    "no case augmentation": ["training.case_augmentation={lower=0.0, upper=0.0}"],
}


def slug(name: str) -> str:
    """A directory name for a variant."""
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-").replace("--", "-")


def run_variant(
    config: Path, out: Path, name: str, changes: list[str], common: list[str], seed: int
) -> dict:
    """Train one variant with one seed and one torch thread; returns its summary line."""
    run_dir = out / f"{slug(name)}-s{seed}"
    log = run_dir.with_suffix(".log")
    saved = run_dir.with_suffix(".json")
    if saved.is_file():  # resume: a run trained to the end is not trained again
        return json.loads(saved.read_text())
    command = [sys.executable, "-m", "tagserve", "train", str(config), "--output", str(run_dir)]
    command += ["--threads", "1", "--no-progress", "--force"]
    for change in [*common, *changes, f"training.seed={seed}"]:
        command += ["--set", change]
    started = time.monotonic()
    with log.open("w") as handle:
        subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, check=True)
    summary = json.loads(log.read_text().strip().splitlines()[-1])
    summary["minutes"] = round((time.monotonic() - started) / 60, 1)
    summary["change"] = " ".join(changes) or "—"
    saved.write_text(json.dumps(summary))
    return summary


def recased_test_f1(config: Path, run_dir: Path, casing: str) -> float:
    """Test F1 of a trained run with every test token re-cased (``lower`` or ``upper``)."""
    from tagserve.model.artifact import load
    from tagserve.model.predictor import Predictor
    from tagserve.training.config import data_dir, load_config
    from tagserve.training.evaluate import evaluate, recase_example
    from tagserve.training.readers import read_dataset

    settings = load_config(config)
    test = read_dataset(data_dir() / settings.data.test, settings.data.format)
    predictor = Predictor(load(run_dir), batch_size=256)
    return evaluate(predictor, [recase_example(e, casing) for e in test])["f1"]


def _mean_sd(values: list[float]) -> str:
    if len(values) < 2:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--set", dest="common", action="append", default=[])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    parser.add_argument(
        "--casing",
        choices=["lower", "upper"],
        action="append",
        default=[],
        help="also report test F1 with every test token re-cased so",
    )
    parser.add_argument("--jobs", type=int, default=2, help="runs trained at once (1 thread each)")
    parser.add_argument(
        "--only", action="append", default=None, help="run only these variant names"
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    variants = {k: v for k, v in VARIANTS.items() if not args.only or k in args.only}
    jobs = [(name, changes, seed) for seed in args.seeds for name, changes in variants.items()]
    with ThreadPoolExecutor(args.jobs) as pool:
        futures = {
            (name, seed): pool.submit(
                run_variant, args.config, args.out, name, changes, args.common, seed
            )
            for name, changes, seed in jobs
        }
        runs = {key: future.result() for key, future in futures.items()}
    for (name, seed), summary in runs.items():
        for casing in args.casing:
            key = f"test_f1_{casing}"
            if key not in summary:
                run_dir = args.out / f"{slug(name)}-s{seed}"
                summary[key] = recased_test_f1(args.config, run_dir, casing)
                run_dir.with_suffix(".json").write_text(json.dumps(summary))
    (args.out / "results.json").write_text(
        json.dumps({f"{n} s{s}": r for (n, s), r in runs.items()}, indent=1)
    )
    print(f"config: {args.config}  common: {' '.join(args.common) or '—'}  seeds: {args.seeds}")
    casing_columns = "".join(f" test F1 {c} |" for c in args.casing)
    print(f"| variant | change | dev F1 | test F1 |{casing_columns} best epochs | minutes |")
    print("|---|---|---:|---:|" + "---:|" * len(args.casing) + "---|---:|")
    for name in variants:
        rows = [runs[(name, seed)] for seed in args.seeds]
        cells = [_mean_sd([r["dev_f1"] for r in rows]), _mean_sd([r["test_f1"] for r in rows])]
        cells += [_mean_sd([r[f"test_f1_{c}"] for r in rows]) for c in args.casing]
        epochs = ", ".join(str(r["best_epoch"]) for r in rows)
        minutes = round(statistics.mean(r["minutes"] for r in rows), 1)
        change = " ".join(variants[name]) or "—"
        print(f"| {name} | `{change}` | {' | '.join(cells)} | {epochs} | {minutes} |")


if __name__ == "__main__":
    main()
