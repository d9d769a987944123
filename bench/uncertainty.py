"""Uncertainty first: does the Label Studio task score put the sentences the model gets wrong
at the front of the queue?

    python -m bench.uncertainty [--sentences 0] [--share 0.10]

Each CoNLL-2003 test sentence (detokenized, bench/detok.py) is one task sent to the shipped
``ner`` model through ``POST /labelstudio/predict``, in-process. A sentence is wrong when its
predicted entities (label, start, end) differ from the gold ones in any way: a missed, extra,
mislabeled or misplaced entity. Sorted by score, lowest first (as the data manager sorts by
prediction score), the lowest ``--share`` of the sentences should hold far more wrong ones
than the base rate. Printed for the served score (the lowest token score, with O tokens) and,
from the ``POST /tag`` answers for the same texts, for the alternatives: the lowest entity
score (1.0 with no entity), the mean token score, and the product of the token scores.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient

from bench.detok import detokenize
from tagserve.model.schemes import spans_from_tags
from tagserve.service.api.app import create_app
from tagserve.service.settings import Settings
from tagserve.training.config import data_dir
from tagserve.training.readers import read_dataset

CONFIG = (
    '<View><Labels name="label" toName="text">'
    + "".join(f'<Label value="{t}"/>' for t in ("PER", "LOC", "ORG", "MISC"))
    + '</Labels><Text name="text" value="$text"/></View>'
)
BATCH = 64
Span = tuple[str, int, int]


def alternatives() -> dict[str, Callable[[dict[str, Any]], float]]:
    """Other task scores, computed from a ``POST /tag`` result."""
    return {
        "lowest entity score (1.0 with no entity)": lambda r: min(
            (e["score"] for e in r["entities"]), default=1.0
        ),
        "mean token score": lambda r: (
            sum(t["score"] for t in r["tokens"]) / len(r["tokens"]) if r["tokens"] else 1.0
        ),
        "product of token scores (a proxy for the path probability)": lambda r: math.prod(
            t["score"] for t in r["tokens"]
        ),
    }


def wrong_share(scores: list[float], wrong: list[bool], share: float) -> tuple[float, int]:
    """Share of wrong sentences among the lowest-scoring ``share`` (ties in input order)."""
    count = max(1, round(len(scores) * share))
    lowest = sorted(range(len(scores)), key=lambda i: scores[i])[:count]
    return sum(wrong[i] for i in lowest) / count, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=0, help="0 = the whole test set")
    parser.add_argument("--share", type=float, default=0.10)
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    examples = read_dataset(data_dir(args.data_dir) / "conll2003/test.txt")
    examples = examples[: args.sentences] if args.sentences else examples
    texts, golds = [], []
    for example in examples:
        text, offsets = detokenize(example.tokens)
        texts.append(text)
        golds.append(
            {(s.label, offsets[s.start][0], offsets[s.end - 1][1])
             for s in spans_from_tags(example.tags, "BIO")}
        )  # fmt: skip
    served: list[float] = []
    wrong: list[bool] = []
    tag_results: list[dict[str, Any]] = []
    with TestClient(create_app(Settings(model_process=False))) as client:
        for start in range(0, len(texts), BATCH):
            batch = texts[start : start + BATCH]
            tasks = [{"id": start + i, "data": {"text": t}} for i, t in enumerate(batch)]
            answer = client.post(
                "/labelstudio/predict", json={"tasks": tasks, "label_config": CONFIG}
            )
            answer.raise_for_status()
            for prediction, gold in zip(
                answer.json()["results"], golds[start : start + BATCH], strict=True
            ):
                served.append(prediction["score"])
                spans = {
                    (r["value"]["labels"][0], r["value"]["start"], r["value"]["end"])
                    for r in prediction["result"]
                }
                wrong.append(spans != gold)
            tagged = client.post("/tag", json={"texts": batch, "model": "ner"})
            tagged.raise_for_status()
            tag_results.extend(tagged.json()["results"])
    base = sum(wrong) / len(wrong)
    share, count = wrong_share(served, wrong, args.share)
    print(
        f"{len(texts)} CoNLL-2003 test sentences, {sum(wrong)} with at least one wrong entity: "
        f"base rate {100 * base:.1f}%"
    )
    print(
        f"served task score (lowest token score): {100 * share:.1f}% wrong among the lowest "
        f"{count} ({100 * args.share:.0f}%), {share / base:.1f}x the base rate"
    )
    for name, score in alternatives().items():
        other, _ = wrong_share([score(r) for r in tag_results], wrong, args.share)
        print(f"alternative, {name}: {100 * other:.1f}% ({other / base:.1f}x)")


if __name__ == "__main__":
    main()
