"""Print a markdown summary of shipped models from their model cards (scores, time, machine).

    python -m bench.model_card ner slots

The numbers come from the artifact's metadata.json, written by the trainer from the same
evaluation `tagserve evaluate` runs; tests/test_shipped_models.py checks they reproduce.
"""

from __future__ import annotations

import argparse

from tagserve.model.artifact import load, resolve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+")
    args = parser.parse_args()
    print(
        "| model | data set | scheme | tags | test P | test R | test F1 | dev F1 | best epoch "
        "| training minutes | machine |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for name in args.models:
        bundle = load(resolve(name))
        card = bundle.card
        test, dev = card.test_metrics or {}, card.dev_metrics or {}
        machine = (card.training or {})["machine"]
        print(
            f"| {card.name} | {card.dataset} | {bundle.labels.scheme} | {len(bundle.labels)} "
            f"| {test['precision']:.2f} | {test['recall']:.2f} | **{test['f1']:.2f}** "
            f"| {dev['f1']:.2f} | {card.best_epoch} | {card.training_minutes} "
            f"| {machine['cpu_count']} CPU cores, {machine['torch_threads']} torch thread(s), "
            f"torch {machine['torch']} |"
        )
    for name in args.models:
        card = load(resolve(name)).card
        print(f"\n{card.name} per type (test):\n")
        print("| type | precision | recall | F1 | support |")
        print("|---|---:|---:|---:|---:|")
        for label, v in sorted((card.test_metrics or {})["per_type"].items()):
            print(
                f"| {label} | {v['precision']:.2f} | {v['recall']:.2f} | {v['f1']:.2f} "
                f"| {v['support']} |"
            )


if __name__ == "__main__":
    main()
