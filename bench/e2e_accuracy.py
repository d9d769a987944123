"""End-to-end NER accuracy: raw text through POST /tag, entities scored by character offsets.

    python -m bench.e2e_accuracy [--data-dir ../shared/data] [--url http://127.0.0.1:8000]

Each CoNLL-2003 test sentence is detokenized into plain text (bench/detok.py); the gold
entities become character spans of that text. The texts go through a running service (one
is started on a free port unless --url is given) in requests of --batch texts; an entity
counts as correct when label, start and end all match. Compare with `tagserve evaluate ner`
on the gold tokens.
"""

from __future__ import annotations

import argparse
import time
from contextlib import nullcontext

import httpx

from bench.detok import detokenize
from bench.server import running_server
from tagserve.model.schemes import spans_from_tags
from tagserve.training.config import data_dir
from tagserve.training.readers import read_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--url", default=None, help="a running service (default: start one)")
    parser.add_argument("--batch", type=int, default=32, help="texts per request")
    args = parser.parse_args()
    examples = read_dataset(data_dir(args.data_dir) / "conll2003/test.txt")
    texts, gold = [], []
    for example in examples:
        text, offsets = detokenize(example.tokens)
        texts.append(text)
        spans = spans_from_tags(example.tags, "BIO")
        gold.append({(s.label, offsets[s.start][0], offsets[s.end - 1][1]) for s in spans})
    server = nullcontext((args.url, 0.0)) if args.url else running_server()
    started = time.perf_counter()
    predicted = []
    with server as (url, _), httpx.Client(base_url=url, timeout=120) as client:
        for i in range(0, len(texts), args.batch):
            response = client.post(
                "/tag", json={"texts": texts[i : i + args.batch], "model": "ner"}
            )
            response.raise_for_status()
            for result in response.json()["results"]:
                predicted.append({(e["label"], e["start"], e["end"]) for e in result["entities"]})
    seconds = time.perf_counter() - started
    correct = sum(len(g & p) for g, p in zip(gold, predicted, strict=True))
    n_gold, n_pred = sum(map(len, gold)), sum(map(len, predicted))
    precision, recall = 100 * correct / max(n_pred, 1), 100 * correct / max(n_gold, 1)
    f1 = 2 * precision * recall / max(precision + recall, 1e-9)
    print(
        "end-to-end (raw text through POST /tag, spans by character offsets), "
        f"{len(texts)} sentences:"
    )
    print(
        f"precision {precision:.2f}  recall {recall:.2f}  F1 {f1:.2f}  "
        f"(gold {n_gold}, predicted {n_pred}, correct {correct}; {seconds:.1f} s)"
    )


if __name__ == "__main__":
    main()
