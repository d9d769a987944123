"""ONNX Runtime's CPU LSTM against torch's, float32 and int8: same tags? faster?

    pip install --no-deps --target /tmp/tagserve-onnx onnx==1.23.1 onnxruntime==1.30.0 \\
        ml_dtypes==0.5.4 flatbuffers==25.12.19
    python -m bench.onnx_trial ner runs/fast-s1 [--onnx-packages /tmp/tagserve-onnx]

onnx and onnxruntime are not in the service's lock (nothing adopted them): they go into a
folder of their own, which this script appends to ``sys.path``, after the lock's packages, so
numpy and protobuf stay the lock's (``--no-deps``: the four above are all that is missing).

For each model (a shipped name or an artifact directory) the encoder and output layer are
exported with ``torch.onnx.export`` (the TorchScript exporter; torch.export cannot trace a
PackedSequence) from padded features plus lengths, ``pack_padded_sequence`` and
``pad_packed_sequence`` as a pair around the LSTM, so the ONNX LSTM gets ``sequence_lens`` and
the backward direction starts at each sentence's last token, not at padding. Then, in one run
on CoNLL-2003 test, for torch float32, ORT float32, torch int8 (:mod:`tagserve.model.quantize`)
and ORT int8 (``onnxruntime.quantization.quantize_dynamic``: LSTM → DynamicQuantizeLSTM,
``reduce_range`` only on CPUs without VNNI): the emissions' largest difference from torch
float32 over real tokens (also at assorted batch sizes, orders and extra padding, since traced
pack → LSTM → pad graphs have been input-dependent: pytorch issue 62240), tags through the
model's own CRF decoding against torch float32's at batch 1 and 128, test F1, and tokens/s at
batch 1 and 128 (word cache on and warm, as served; one thread everywhere: torch threads 1, ORT
intra- and inter-op threads 1, sequential), medians over interleaved rounds. ORT replaces only
the encoder and output layer; features and decoding are the predictor's own.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from tagserve.model.artifact import ModelBundle, load, resolve
from tagserve.model.predictor import Predictor
from tagserve.model.quantize import with_precision
from tagserve.training.config import data_dir
from tagserve.training.evaluate import evaluate
from tagserve.training.readers import read_dataset

VARIANTS = ["torch float32", "ORT float32", "torch int8", "ORT int8"]


class EncoderGraph(nn.Module):
    """What ORT runs: padded features (batch, seq_len, input_dim) and lengths (batch,) →
    emissions (batch, seq_len, num_tags); padded positions hold the output layer's bias."""

    def __init__(self, bundle: ModelBundle) -> None:
        super().__init__()
        self.rnn = bundle.network.rnn
        self.emission = bundle.network.emission

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = pack_padded_sequence(features, lengths, batch_first=True, enforce_sorted=False)
        states, _ = self.rnn(packed)
        padded, _ = pad_packed_sequence(states, batch_first=True, total_length=features.size(1))
        return self.emission(padded)


class OrtPredictor(Predictor):
    """The predictor with its encoder and output layer run by an ONNX Runtime session."""

    def __init__(self, bundle: ModelBundle, session: Any) -> None:
        super().__init__(bundle, batch_size=128, cache_words=50_000)
        self.session = session

    def emissions(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        inputs = {"features": features.numpy(), "lengths": lengths.numpy()}
        return torch.from_numpy(self.session.run(None, inputs)[0])

    def _decode(self, sentences: list[list[str]]) -> Any:
        assert self.cache is not None
        features, lengths = self.cache.batch(sentences)
        paths, scores = self.bundle.network.decode(self.emissions(features, lengths), lengths)
        return paths, scores, None


def torch_emissions(predictor: Predictor, features: torch.Tensor, lengths: torch.Tensor) -> Any:
    network = predictor.bundle.network
    return network.emissions(network.encode(features, lengths))


def export(bundle: ModelBundle, path: Path) -> None:
    """The encoder graph as ONNX, batch and length dynamic."""
    example = torch.randn(3, 7, bundle.network.input_dim)
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated; its LSTM warnings are what the checks test.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            EncoderGraph(bundle).eval(),
            (example, torch.tensor([7, 5, 2])),
            str(path),
            dynamo=False,
            opset_version=17,
            input_names=["features", "lengths"],
            output_names=["emissions"],
            dynamic_axes={
                "features": {0: "batch", 1: "seq_len"},
                "lengths": {0: "batch"},
                "emissions": {0: "batch", 1: "seq_len"},
            },
        )


def has_vnni() -> bool:
    flags = Path("/proc/cpuinfo").read_text().split()
    return "avx512_vnni" in flags or "avx_vnni" in flags


def max_diff(
    reference: Predictor, other: Predictor, batches: list[list[list[str]]], pad: int = 0
) -> float:
    """Largest |emission difference| over real tokens, features from ``reference``'s cache."""
    assert reference.cache is not None
    worst = 0.0
    for sentences in batches:
        features, lengths = reference.cache.batch(sentences)
        if pad:
            features = nn.functional.pad(features, (0, 0, 0, pad))
        expected = torch_emissions(reference, features, lengths)
        if isinstance(other, OrtPredictor):
            got = other.emissions(features, lengths)
        else:
            got = torch_emissions(other, features, lengths)
        mask = torch.arange(features.size(1))[None, :] < lengths[:, None]
        worst = max(worst, float((got - expected).abs()[mask].max()))
    return worst


def agreement(reference: list[list[str]], tags: list[list[str]]) -> tuple[float, int]:
    """Share of tokens with the same tag, and how many sentences differ somewhere."""
    same = sum(
        a == b for ra, rb in zip(reference, tags, strict=True) for a, b in zip(ra, rb, strict=True)
    )
    total = sum(map(len, reference))
    return same / total, sum(ra != rb for ra, rb in zip(reference, tags, strict=True))


def speed(predictor: Predictor, sentences: list[list[str]], batch: int) -> float:
    """Tokens/s over the first 400 sentences at batch 1, 1,280 otherwise (cache warm), in
    the test set's order, as ``bench.quantization`` times them."""
    chunk = sentences[: 400 if batch == 1 else 1280]
    predictor.batch_size = batch
    started = time.perf_counter()
    for i in range(0, len(chunk), batch):
        predictor.predict(chunk[i : i + batch])
    return sum(map(len, chunk)) / (time.perf_counter() - started)


def trial(
    model: str, test: list[Any], ort: Any, quantization: Any, rounds: int, sizes: list[int]
) -> list[dict]:
    """Every figure for one model; prints as it goes, returns one row per variant."""
    path = resolve(model)
    sentences = [e.tokens for e in test]
    predictors: dict[str, Predictor] = {}
    with tempfile.TemporaryDirectory() as scratch:
        fp32, int8 = Path(scratch) / "encoder.onnx", Path(scratch) / "encoder-int8.onnx"
        bundle = load(path)
        export(bundle, fp32)
        quantization.quantize_dynamic(
            str(fp32),
            str(int8),
            weight_type=quantization.QuantType.QInt8,
            reduce_range=not has_vnni(),
        )
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL

        def session(file: Path) -> Any:
            return ort.InferenceSession(str(file), options, providers=["CPUExecutionProvider"])

        predictors["torch float32"] = Predictor(bundle, batch_size=128, cache_words=50_000)
        predictors["ORT float32"] = OrtPredictor(load(path), session(fp32))
        predictors["torch int8"] = Predictor(
            with_precision(load(path), "int8"), batch_size=128, cache_words=50_000
        )
        predictors["ORT int8"] = OrtPredictor(load(path), session(int8))
        ops = sorted({node.op_type for node in _onnx().load(str(int8)).graph.node})
        print(f"{model}: int8 graph ops: {', '.join(ops)}", flush=True)
    reference = predictors["torch float32"]
    rows = []
    with torch.inference_mode():
        for predictor in predictors.values():
            predictor.batch_size = 128
            predictor.predict(sentences)  # warms the word cache
        by_length = sorted((s for s in sentences if s), key=len, reverse=True)
        batches = [by_length[i : i + 128] for i in range(0, len(by_length), 128)]
        rng = random.Random(0)
        shaped = [rng.sample(sentences[:2000], size) for size in (1, 2, 3, 8, 33, 128, 300)]
        shaped = [[s for s in batch if s] for batch in shaped]
        tags = {
            (name, batch): [r.tags for r in _predict(p, sentences, batch)]
            for name, p in predictors.items()
            for batch in (1, 128)
        }
        for name, predictor in predictors.items():
            row: dict[str, Any] = {"model": f"{bundle.card.name} {bundle.card.version}"}
            row["variant"] = name
            row["max |diff|"] = max_diff(reference, predictor, batches)
            row["max |diff| shapes"] = max(
                max_diff(reference, predictor, shaped),
                max_diff(reference, predictor, shaped, pad=3),
            )
            for batch in (1, 128):
                share, differing = agreement(tags["torch float32", batch], tags[name, batch])
                row[f"tags b={batch}"] = (share, differing)
            predictor.batch_size = 128
            row["F1"] = evaluate(predictor, test)["f1"]
            rows.append(row)
        timings: dict[tuple[str, int], list[float]] = {}
        for round_index in range(rounds):
            names = VARIANTS if round_index % 2 == 0 else VARIANTS[::-1]
            for batch in sizes:
                for name in names:
                    timings.setdefault((name, batch), []).append(
                        speed(predictors[name], sentences, batch)
                    )
        for row in rows:
            for batch in sizes:
                row[f"tok/s b={batch}"] = statistics.median(timings[row["variant"], batch])
    for row in rows:
        print(row, flush=True)
    return rows


def _predict(predictor: Predictor, sentences: list[list[str]], batch: int) -> list[Any]:
    predictor.batch_size = batch
    return predictor.predict(sentences)


def _onnx() -> Any:
    import onnx

    return onnx


def print_table(rows: list[dict], sizes: list[int]) -> None:
    print()
    print(
        "| model | variant | max abs diff vs torch float32 (test; other shapes) | tags b=1 vs "
        "torch float32 | tags b=128 vs torch float32 | test F1 | "
        + " | ".join(f"tok/s b={b}" for b in sizes)
        + " |"
    )
    print("|---|---|---:|---:|---:|---:|" + "---:|" * len(sizes))
    for row in rows:
        cells = [f"{row['max |diff|']:.1e}; {row['max |diff| shapes']:.1e}"]
        for batch in (1, 128):
            share, differing = row[f"tags b={batch}"]
            cells.append(f"{100 * share:.3f}% ({differing} sentences differ)")
        cells.append(f"{row['F1']:.2f}")
        cells += [f"{row[f'tok/s b={b}']:,.0f}" for b in sizes]
        print(f"| {row['model']} | {row['variant']} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=["ner"], help="names or artifact dirs")
    parser.add_argument("--onnx-packages", default="/tmp/tagserve-onnx")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")
    parser.add_argument("--batch-sizes", default="1,8,32,128", help="timed batch sizes")
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    sys.path.append(args.onnx_packages)
    try:
        import onnxruntime as ort
        from onnxruntime import quantization
    except ImportError:
        print(
            f"tagserve: error: no onnxruntime in {args.onnx_packages} (--onnx-packages); "
            f"install it as the top of {__file__} says",
            file=sys.stderr,
        )
        sys.exit(2)
    torch.set_num_threads(1)
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    test = read_dataset(data_dir(args.data_dir) / "conll2003/test.txt")
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"VNNI {'yes' if has_vnni() else 'no'}; torch {torch.__version__}, onnx "
        f"{_onnx().__version__}, onnxruntime {ort.__version__}; one thread everywhere; "
        f"CoNLL-2003 test: {len(test)} sentences, {sum(len(e.tokens) for e in test)} tokens"
    )
    rows = [
        row
        for model in args.models
        for row in trial(model, test, ort, quantization, args.rounds, sizes)
    ]
    print_table(rows, sizes)
    for row in rows:
        if row["variant"] == "ORT float32":
            exact = all(row[f"tags b={b}"][1] == 0 for b in (1, 128))
            base = next(
                r for r in rows if r["model"] == row["model"] and r["variant"] == VARIANTS[0]
            )
            ratios = ", ".join(
                f"{row[f'tok/s b={b}'] / base[f'tok/s b={b}']:.2f}x at batch {b}" for b in sizes
            )
            verdict = "match" if exact else "do not match"
            print(f"{row['model']}: ORT float32 tags {verdict} torch's on all of test; {ratios}")


if __name__ == "__main__":
    main()
