"""Write a model's test F1 on re-cased test data into its model card, so ``GET /models`` and
docs/results.md report cased, lower-cased and upper-cased F1 side by side.

    python -m bench.annotate_casing ARTIFACT_DIR --test conll2003/test.txt

The figures are what ``tagserve evaluate ARTIFACT_DIR --data TEST --casing lower|upper``
prints; the card's ``test_metrics`` gains ``f1_lower`` and ``f1_upper`` (weights untouched).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tagserve.model.artifact import load, save_card
from tagserve.model.predictor import Predictor
from tagserve.training.config import data_dir
from tagserve.training.evaluate import evaluate, recase_example
from tagserve.training.readers import read_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifact", type=Path)
    parser.add_argument("--test", required=True, help="test split, relative to the data dir")
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    bundle = load(args.artifact)
    test = read_dataset(data_dir(args.data_dir) / args.test)
    predictor = Predictor(bundle, batch_size=256)
    metrics = dict(bundle.card.test_metrics or {})
    metrics["f1"] = round(float(evaluate(predictor, test)["f1"]), 2)
    for casing in ("lower", "upper"):
        recased = [recase_example(e, casing) for e in test]
        metrics[f"f1_{casing}"] = round(float(evaluate(predictor, recased)["f1"]), 2)
    card = bundle.card.model_copy(update={"test_metrics": metrics})
    save_card(args.artifact, card)
    print({k: metrics[k] for k in ("f1", "f1_lower", "f1_upper")})


if __name__ == "__main__":
    main()
