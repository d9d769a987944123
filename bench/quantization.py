"""Does dynamic int8 quantization of the LSTM and the output layer pay? Test F1 and speed.

    python -m bench.quantization [--model ner] [--baseline DIR] [--data-dir ../shared/data]

Quantizes a copy of the model with ``torch.ao.quantization.quantize_dynamic`` (LSTM and
Linear, qint8), then prints CoNLL-2003 test F1 (as published and lower-cased) and tokens/s at
batch sizes 1 and 128 (one torch thread, word cache on) for both. ``--baseline`` adds another
artifact in float32 to the same run (the speed a new model must keep). The rule: keep int8
only if F1 drops by < 0.2 and it is clearly faster.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from tagserve.model.artifact import load, resolve
from tagserve.model.predictor import Predictor
from tagserve.model.quantize import with_precision
from tagserve.training.config import data_dir
from tagserve.training.evaluate import evaluate, recase_example
from tagserve.training.readers import read_dataset


def quantized_copy(model: str) -> Predictor:
    """The model with its LSTM and output layer quantized to int8 (dynamic), as the service
    serves it with ``TAGSERVE_PRECISION=NAME=int8``."""
    return Predictor(
        with_precision(load(resolve(model)), "int8"), batch_size=128, cache_words=50_000
    )


def tokens_per_second(predictor: Predictor, sentences: list[list[str]], batch: int) -> float:
    """Throughput over the first 1,280 sentences (400 at batch 1), cache already warm."""
    predictor.batch_size = batch
    predictor.predict(sentences)
    chunk = sentences[: 400 if batch == 1 else 1280]
    started = time.perf_counter()
    for i in range(0, len(chunk), batch):
        predictor.predict(chunk[i : i + batch])
    return sum(map(len, chunk)) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ner")
    parser.add_argument("--baseline", default=None, help="another artifact, timed in float32")
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    test = read_dataset(data_dir(args.data_dir) / "conll2003/test.txt")
    sentences = [e.tokens for e in test]
    print(f"model={args.model} cores={os.cpu_count()} torch_threads=1 torch={torch.__version__}")
    lower = [recase_example(e, "lower") for e in test]
    print(f"{'weights':>14} {'test F1':>8} {'lower F1':>9} {'tok/s b=1':>10} {'tok/s b=128':>12}")
    variants = {
        "fp32": Predictor(load(resolve(args.model)), batch_size=128, cache_words=50_000),
        "int8": quantized_copy(args.model),
    }
    if args.baseline:
        baseline = Predictor(load(resolve(args.baseline)), batch_size=128, cache_words=50_000)
        variants = {"baseline fp32": baseline, **variants}
    speeds: dict[str, tuple[float, float]] = {}
    for name, predictor in variants.items():
        f1 = evaluate(predictor, test)["f1"]
        lower_f1 = evaluate(predictor, lower)["f1"]
        speeds[name] = (
            tokens_per_second(predictor, sentences, 1),
            tokens_per_second(predictor, sentences, 128),
        )
        one, many = speeds[name]
        print(f"{name:>14} {f1:>8.2f} {lower_f1:>9.2f} {one:>10.0f} {many:>12.0f}")
    if args.baseline:
        for name in ("fp32", "int8"):
            (one, many), (old_one, old_many) = speeds[name], speeds["baseline fp32"]
            print(
                f"{name} vs baseline: batch 1 {one / old_one:.2f}x, "
                f"batch 128 {many / old_many:.2f}x"
            )


if __name__ == "__main__":
    main()
