"""Where a model batch spends its time: torch profiler per op, cProfile per Python function.

    python -m bench.model_profile [--model ner] [--batch 128] [--batches 10]

Runs the ``ner`` predictor (one torch thread, word cache warm) over CoNLL-2003 test
sentences in their natural order and prints the top ops by self CPU time, then the top
Python functions by their own time, plus the GEMM rate this CPU reaches on the LSTM's
recurrent matrix product. This is the profile behind the speed notes in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import time

import torch
from torch.profiler import ProfilerActivity, profile

from tagserve.model.artifact import load, resolve
from tagserve.model.predictor import Predictor
from tagserve.training.config import data_dir
from tagserve.training.readers import read_dataset


def gemm_rate(rows: int, inner: int, outer: int, repeats: int = 300) -> float:
    """GFLOP/s of a (rows x inner) @ (inner x outer) float32 product on one thread."""
    left, right = torch.randn(rows, inner), torch.randn(inner, outer)
    left @ right
    started = time.perf_counter()
    for _ in range(repeats):
        left @ right
    return 2 * rows * inner * outer * repeats / (time.perf_counter() - started) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ner")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--batches", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(1)
    sentences = [e.tokens for e in read_dataset(data_dir(args.data_dir) / "conll2003/test.txt")]
    bundle = load(resolve(args.model))
    predictor = Predictor(bundle, batch_size=args.batch, cache_words=50_000)
    predictor.predict(sentences)  # warm the word cache, as a running service has it
    chunks = [
        sentences[i * args.batch : (i + 1) * args.batch]
        for i in range(args.batches)
        if i * args.batch < len(sentences)
    ]
    tokens = sum(len(s) for chunk in chunks for s in chunk)
    print(
        f"model={args.model} cores={os.cpu_count()} torch_threads=1 batch={args.batch} "
        f"batches={len(chunks)} tokens={tokens}"
    )
    started = time.perf_counter()
    for chunk in chunks:
        predictor.predict(chunk)
    elapsed = time.perf_counter() - started
    print(
        f"unprofiled: {1000 * elapsed / len(chunks):.1f} ms/batch, {tokens / elapsed:.0f} tokens/s"
    )
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for chunk in chunks:
            predictor.predict(chunk)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))
    profiler = cProfile.Profile()
    profiler.enable()
    for chunk in chunks:
        predictor.predict(chunk)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(12)
    print("\n".join(line for line in out.getvalue().splitlines() if line.strip())[:6000])
    hidden = bundle.config.hidden_size
    print(
        f"GEMM rate on this CPU, one thread: {gemm_rate(128, hidden, 4 * hidden):.1f} GFLOP/s "
        f"for the recurrent step (128x{hidden} @ {hidden}x{4 * hidden}), "
        f"{gemm_rate(1024, 1024, 1024, 10):.1f} GFLOP/s for 1024^3"
    )


if __name__ == "__main__":
    main()
