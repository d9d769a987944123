"""Score several training runs of one recipe (seeds) on dev and test: a markdown table with a
row per run, then mean ± standard deviation and the median, as docs/results.md reports them.

    python -m bench.seeds --dev conll2003/valid.txt --test conll2003/test.txt \\
        --casing as-is lower upper runs/ner-robust-s1 runs/ner-robust-s2 runs/ner-robust-s3
    python -m bench.seeds --dev atis/dev --test atis/test runs/atis-joint-s1 ...
    # intent from a separate model: slots from the first run, intent from the second
    python -m bench.seeds --dev atis/dev --test atis/test \\
        runs/atis-slots-s1+runs/atis-intent-only-s1 ...

Columns: slot/entity F1 on dev and on test (for each --casing variant of test), and, where the
model has an intent head, intent and semantic-frame accuracy on test.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any

from tagserve.model.artifact import load
from tagserve.model.predictor import Predictor
from tagserve.model.schemes import convert
from tagserve.training.config import data_dir
from tagserve.training.evaluate import evaluate, recase_example, score, score_frames
from tagserve.training.readers import Example, read_dataset


def scores(
    run: str, dev: list[Example], test: list[Example], casings: list[str]
) -> dict[str, float]:
    """Dev F1, test F1 per casing, and intent/frame accuracy on test where there is a head."""
    slots_path, _, intent_path = run.partition("+")
    predictor = Predictor(load(Path(slots_path)), batch_size=256)
    row = {"dev F1": evaluate(predictor, dev)["f1"]}
    for casing in casings:
        data = test if casing == "as-is" else [recase_example(e, casing) for e in test]
        metrics = evaluate(predictor, data)
        row["test F1" if casing == "as-is" else f"test F1 {casing}"] = metrics["f1"]
        if casing == "as-is" and "intent_accuracy" in metrics:
            row["intent acc"] = metrics["intent_accuracy"]
            row["frame acc"] = metrics["frame_accuracy"]
    if intent_path:
        row.update(_combined(predictor, Predictor(load(Path(intent_path)), batch_size=256), test))
    return row


def _combined(slots: Predictor, intents: Predictor, test: list[Example]) -> dict[str, float]:
    """Frame accuracy with slots from one model and the intent from another."""
    tagged = slots.predict([e.tokens for e in test])
    gold = [convert(e.tags, "BIO", "BIO") for e in test]
    predicted = [convert(t.tags, slots.scheme, "BIO") for t in tagged]  # type: ignore[arg-type]
    named = [
        t.intents[0][0] if t.intents else "" for t in intents.predict([e.tokens for e in test])
    ]
    frames = score_frames(test, named, gold, predicted)
    return {
        "test F1": score(gold, predicted)["f1"],
        "intent acc": frames["intent_accuracy"],
        "frame acc": frames["frame_accuracy"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="artifact directories (or SLOTS+INTENT pairs)")
    parser.add_argument("--dev", required=True, help="dev split, relative to the data dir")
    parser.add_argument("--test", required=True, help="test split, relative to the data dir")
    parser.add_argument(
        "--casing", nargs="+", default=["as-is"], choices=["as-is", "lower", "upper"]
    )
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    root = data_dir(args.data_dir)
    dev, test = read_dataset(root / args.dev), read_dataset(root / args.test)
    rows: list[tuple[str, dict[str, Any]]] = [
        (run, scores(run, dev, test, args.casing)) for run in args.runs
    ]
    columns = list(dict.fromkeys(c for _, row in rows for c in row))
    print("| run | " + " | ".join(columns) + " |")
    print("|---|" + "---:|" * len(columns))
    for run, row in rows:
        cells = [f"{row[c]:.2f}" if c in row else "–" for c in columns]
        print(f"| {run} | " + " | ".join(cells) + " |")
    values = {c: [row[c] for _, row in rows if c in row] for c in columns}
    spread = [
        f"{statistics.mean(v):.2f} ± {statistics.stdev(v) if len(v) > 1 else 0.0:.2f}"
        for v in values.values()
    ]
    print("| mean ± sd | " + " | ".join(spread) + " |")
    print("| median | " + " | ".join(f"{statistics.median(v):.2f}" for v in values.values()) + " |")


if __name__ == "__main__":
    main()
