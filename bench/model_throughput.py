"""Model-level speed: sentences/s and tokens/s of a model at several batch sizes, plus peak RSS.

    python -m bench.model_throughput --model ner --threads 1

Reads the CoNLL-2003 test sentences (gold tokens) from --data-dir; prints one table.
"""

from __future__ import annotations

import argparse
import itertools
import os
import resource
import time

import torch

from tagserve.model.artifact import load, resolve
from tagserve.model.predictor import Predictor
from tagserve.training.config import data_dir
from tagserve.training.readers import read_dataset


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ner")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-sizes", default="1,8,32,128")
    parser.add_argument("--seconds", type=float, default=8.0, help="time budget per batch size")
    parser.add_argument(
        "--cache-words",
        default="0,50000",
        help="word-feature cache sizes to compare (0 = off; the service uses 50000)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sentences = [e.tokens for e in read_dataset(data_dir(args.data_dir) / "conll2003/test.txt")]
    bundle = load(resolve(args.model))
    print(
        f"model={args.model} cores={os.cpu_count()} torch_threads={torch.get_num_threads()} "
        f"torch={torch.__version__} sentences={len(sentences)} "
        f"tokens={sum(map(len, sentences))}"
    )
    print(f"{'cache':>6} {'batch':>6} {'sentences/s':>12} {'tokens/s':>10} {'ms/batch':>9}")
    for cache_words, batch_size in itertools.product(
        [int(c) for c in args.cache_words.split(",")],
        [int(b) for b in args.batch_sizes.split(",")],
    ):
        predictor = Predictor(bundle, batch_size=batch_size, cache_words=cache_words)
        predictor.predict(sentences[:batch_size])  # warm-up (the cache starts cold)
        done_sentences = done_tokens = batches = 0
        started = time.perf_counter()
        # Walk the test set in its natural order, one batch per call, as a server would see it.
        while time.perf_counter() - started < args.seconds:
            start = (batches * batch_size) % len(sentences)
            chunk = sentences[start : start + batch_size]
            predictor.predict(chunk)
            done_sentences += len(chunk)
            done_tokens += sum(map(len, chunk))
            batches += 1
        elapsed = time.perf_counter() - started
        print(
            f"{cache_words:>6} {batch_size:>6} {done_sentences / elapsed:>12.0f} "
            f"{done_tokens / elapsed:>10.0f} {1000 * elapsed / batches:>9.2f}"
        )
    print(f"peak RSS: {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
