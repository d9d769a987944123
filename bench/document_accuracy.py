"""Documents vs. single sentences: the same CoNLL-2003 test sentences tagged one per text and
joined into paragraphs, entity F1 by character offsets for both.

    python -m bench.document_accuracy [--sentences 300] [--per-paragraph 6]

Each sentence is detokenized (bench/detok.py). In the document form, sentences of a paragraph
are joined by a space, or by a line break after a sentence without final punctuation (a
headline, a dateline, a table row), and paragraphs by a blank line: the service must find the
sentence boundaries itself. Runs the app in-process on the shipped models.
"""

from __future__ import annotations

import argparse

from fastapi.testclient import TestClient

from bench.detok import detokenize
from tagserve.model.schemes import spans_from_tags
from tagserve.service.api.app import create_app
from tagserve.service.settings import Settings
from tagserve.training.config import data_dir
from tagserve.training.readers import read_dataset

FINAL = (".", "!", "?", '"', "'")
Span = tuple[str, int, int]


def f1(gold: set[Span], predicted: set[Span]) -> float:
    correct = len(gold & predicted)
    precision, recall = correct / max(len(predicted), 1), correct / max(len(gold), 1)
    return 100 * 2 * precision * recall / max(precision + recall, 1e-9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=300)
    parser.add_argument("--per-paragraph", type=int, default=6)
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    examples = read_dataset(data_dir(args.data_dir) / "conll2003/test.txt")[: args.sentences]
    texts, golds = [], []
    for example in examples:
        text, offsets = detokenize(example.tokens)
        texts.append(text)
        golds.append(
            [(s.label, offsets[s.start][0], offsets[s.end - 1][1])
             for s in spans_from_tags(example.tags, "BIO")]
        )  # fmt: skip
    paragraphs: list[str] = []
    document_gold: list[set[Span]] = []
    for start in range(0, len(texts), args.per_paragraph):
        paragraph, gold = "", set()
        for text, spans in zip(
            texts[start : start + args.per_paragraph],
            golds[start : start + args.per_paragraph],
            strict=True,
        ):
            if paragraph:
                paragraph += " " if paragraph.rstrip().endswith(FINAL) else "\n"
            shift = len(paragraph)
            paragraph += text
            gold |= {(label, a + shift, b + shift) for label, a, b in spans}
        paragraphs.append(paragraph)
        document_gold.append(gold)
    with TestClient(create_app(Settings(model_process=False))) as client:

        def entities(batch: list[str]) -> list[set[Span]]:
            response = client.post("/tag", json={"texts": batch, "model": "ner"})
            response.raise_for_status()
            return [
                {(e["label"], e["start"], e["end"]) for e in result["entities"]}
                for result in response.json()["results"]
            ]

        single = [entities(texts[i : i + 64]) for i in range(0, len(texts), 64)]
        documents = [entities(paragraphs[i : i + 16]) for i in range(0, len(paragraphs), 16)]
    single_f1 = f1(
        {(i, *s) for i, spans in enumerate(golds) for s in spans},
        {(i, *s) for i, spans in enumerate(p for batch in single for p in batch) for s in spans},
    )
    document_f1 = f1(
        {(i, *s) for i, spans in enumerate(document_gold) for s in spans},
        {(i, *s) for i, spans in enumerate(p for batch in documents for p in batch) for s in spans},
    )
    breaks = sum(p.count("\n") for p in paragraphs)
    print(
        f"{len(texts)} CoNLL-2003 test sentences: one per text F1 {single_f1:.2f}; as "
        f"{len(paragraphs)} paragraphs ({breaks} line breaks) F1 {document_f1:.2f}; "
        f"difference {document_f1 - single_f1:+.2f}"
    )


if __name__ == "__main__":
    main()
