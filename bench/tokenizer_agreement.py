"""How often does the service's tokenizer reproduce the gold tokens of detokenized sentences?

    python -m bench.tokenizer_agreement [--data-dir ../shared/data]

For CoNLL-2003 (test, valid, train) each gold sentence is detokenized into plain text
(bench/detok.py) and re-tokenized; ATIS sentences are joined by spaces. Prints the share
of sentences whose tokens match exactly, sample mismatches, and tokenizer speed.
"""

from __future__ import annotations

import argparse
import time

from bench.detok import detokenize
from tagserve.text.tokenizer import tokenize
from tagserve.training.config import data_dir
from tagserve.training.readers import read_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--show", type=int, default=12, help="mismatches to print for test")
    args = parser.parse_args()
    root = data_dir(args.data_dir)
    sets = [
        ("conll2003 test", "conll2003/test.txt", True),
        ("conll2003 valid", "conll2003/valid.txt", True),
        ("conll2003 train", "conll2003/train.txt", True),
        ("atis test", "atis/test", False),
    ]
    for name, relative, detok in sets:
        sentences = [e.tokens for e in read_dataset(root / relative)]
        texts = [detokenize(s)[0] if detok else " ".join(s) for s in sentences]
        started = time.perf_counter()
        style = "conll" if detok else "atis"
        tokenized = [[t.text for t in tokenize(text, style)] for text in texts]
        seconds = time.perf_counter() - started
        mismatches = [(g, p) for g, p in zip(sentences, tokenized, strict=True) if g != p]
        share = 100 * (1 - len(mismatches) / len(sentences))
        print(
            f"{name}: {share:.2f}% of {len(sentences)} sentences tokenized exactly "
            f"({len(sentences) / seconds:,.0f} sentences/s)"
        )
        if name == "conll2003 test":
            for gold, predicted in mismatches[: args.show]:
                first = next(
                    i
                    for i, (a, b) in enumerate(zip([*gold, ""], [*predicted, ""], strict=False))
                    if a != b
                )
                print(
                    f"  gold {gold[max(0, first - 2) : first + 3]} "
                    f"got {predicted[max(0, first - 2) : first + 3]}"
                )


if __name__ == "__main__":
    main()
