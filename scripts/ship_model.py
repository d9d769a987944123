"""Ship a trained run as a named model: copy its artifact into model/artifacts/NAME and give
its card the shipped identity, recording which run it came from.

    python scripts/ship_model.py runs/learning-curve/models/conll2003-all-s1 --name ner-fast \\
        --version 1.0.0 --dataset "CoNLL-2003 English" \\
        --description "Named entities: PER, ORG, LOC, MISC (any casing), the fast variant"

Only the card's identity changes (name, version, data set, description, and ``precision``
with ``--precision``); weights, vocabularies, labels, scores and history are the run's, byte
for byte. The artifact is checked by loading it before and after.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from tagserve.model.artifact import load, save_card
from tagserve.model.artifact_files import SHIPPED_MODELS_DIR


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="the trained artifact directory")
    parser.add_argument("--name", required=True)
    parser.add_argument("--version", required=True)
    parser.add_argument("--dataset", default=None)
    parser.add_argument("--description", default=None)
    parser.add_argument("--precision", choices=["float32", "int8"], default=None)
    args = parser.parse_args()
    card = load(args.run).card
    target = SHIPPED_MODELS_DIR / args.name
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for path in sorted(args.run.iterdir()):
        if path.suffix in {".json", ".safetensors"}:
            shutil.copy2(path, target / path.name)
    training = dict(card.training or {})
    training["shipped_from"] = {"run": str(args.run), "name": card.name, "version": card.version}
    update = {
        "name": args.name,
        "version": args.version,
        "training": training,
        **({"dataset": args.dataset} if args.dataset else {}),
        **({"description": args.description} if args.description else {}),
        **({"precision": args.precision} if args.precision else {}),
    }
    save_card(target, card.model_copy(update=update))
    shipped = load(target).card
    print(f"shipped {shipped.name} {shipped.version} ({shipped.precision}) to {target}")


if __name__ == "__main__":
    main()
