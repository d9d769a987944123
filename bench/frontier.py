"""The accuracy/speed frontier: every model and precision in one run, one table.

    python -m bench.frontier ner ner-fast slots --baseline /tmp/ner-1.0.0 [--seconds 8]

For each model (a shipped name or an artifact directory) in float32 and in int8
(:mod:`tagserve.model.quantize`): F1 on its test split as written and re-cased (lower, upper;
a lower-casing model like ``slots`` reads every casing alike, so one figure, plus intent
accuracy), tokens/s at batch 1 and 128 (one torch thread, word cache on, as the service runs
it, timed in interleaved rounds: the median of --rounds) with the share of the recurrence's
float32 GEMM bound they reach (the bound from the model's
shapes and a GEMM timed in this run), then ``tagserve serve`` with that model alone
(``TAGSERVE_PRECISION``): single-sentence ``POST /tag`` req/s and p99 at c=64 with wrk, and
the PSS of the whole process tree. ``--baseline`` adds an artifact in float32 (ner 1.0.0, the
speed a fast model must keep) and prints each model's speed ratio to it.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
from pathlib import Path
from typing import Any

import torch

from bench.cold_start import memory_mb
from bench.detok import detokenize
from bench.model_profile import gemm_rate
from bench.quantization import tokens_per_second
from bench.server import process_tree, running_server, server_pid
from bench.service_load import load_wrk
from tagserve.model.artifact import load, resolve
from tagserve.model.predictor import Predictor
from tagserve.model.quantize import with_precision
from tagserve.training.config import data_dir
from tagserve.training.evaluate import evaluate, recase_example
from tagserve.training.readers import Example, read_dataset

CONCURRENCY = 64


def accuracy(predictor: Predictor, test: list[Example], lowercase: bool) -> dict[str, float]:
    """F1 as written, lower- and upper-cased (one figure for a lower-casing model), intent."""
    casings = ["as-is"] if lowercase else ["as-is", "lower", "upper"]
    row: dict[str, float] = {}
    for casing in casings:
        data = test if casing == "as-is" else [recase_example(e, casing) for e in test]
        metrics = evaluate(predictor, data)
        row[f"F1 {casing}"] = metrics["f1"]
        if "intent_accuracy" in metrics:
            row["intent"] = metrics["intent_accuracy"]
    return row


def gemm_bound(predictor: Predictor, rates: dict[tuple[int, int], float]) -> tuple[float, float]:
    """Tokens/s the recurrence alone would allow at batch 1 and 128 at the GEMM rates measured.

    A bidirectional LSTM step is, per direction and token, a (1 x in+h) @ (in+h x 4h) product:
    2 * 4h * (in + h) FLOP; the input part runs as one big GEMM, the recurrent part as batch x h
    @ h x 4h per step, the shape whose rate is timed (matrix-vector at batch 1)."""
    config = predictor.bundle.config
    hidden, inputs = config.hidden_size, predictor.bundle.network.input_dim
    directions = 2 if config.bidirectional else 1
    gates = 4 if config.rnn == "lstm" else 3
    flop = directions * config.num_layers * 2 * gates * hidden * (inputs + hidden)
    bounds = []
    for batch in (1, 128):
        key = (batch, hidden)
        if key not in rates:
            rates[key] = gemm_rate(
                batch, hidden, gates * hidden, repeats=3000 if batch == 1 else 300
            )
        bounds.append(rates[key] * 1e9 / flop)
    return bounds[0], bounds[1]


def serve(path: Path, precision: str, bodies: list[dict], seconds: float) -> dict[str, Any]:
    """``tagserve serve`` with this model alone: req/s and p99 at c=64, and PSS."""
    with tempfile.TemporaryDirectory() as models:
        name = path.name
        (Path(models) / name).symlink_to(path.resolve())
        env = {
            "TAGSERVE_MODELS_DIR": models,
            "TAGSERVE_DEFAULT_MODEL": name,
            "TAGSERVE_PRECISION": f"{name}={precision}",
            "TAGSERVE_WORKERS": "1",
            "TAGSERVE_TORCH_THREADS": "1",
        }
        with running_server(env) as (url, _):
            load_wrk(url, bodies, CONCURRENCY, 200_000, 2)  # warm-up
            result = load_wrk(url, bodies, CONCURRENCY, 1_000_000, seconds)
            pss = sum(memory_mb(pid, "Pss") for pid in process_tree(server_pid(url)))
    if result["errors"] > 0.01 * result["requests"]:
        raise SystemExit(
            f"{result['errors']} of {result['requests']} requests failed: not a figure"
        )
    return {
        "req/s": result["rps"],
        "p99 ms": result["p99"],
        "PSS MB": pss,
        "errors": result["errors"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="shipped names or artifact directories")
    parser.add_argument("--baseline", default=None, help="an artifact timed in float32 only")
    parser.add_argument("--seconds", type=float, default=8.0, help="wrk run per row")
    parser.add_argument("--no-service", action="store_true", help="model-level figures only")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved speed rounds")
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    root = data_dir(args.data_dir)
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__}, one torch thread; wrk c={CONCURRENCY}, {args.seconds:.0f} s"
    )
    rows: list[dict[str, Any]] = []
    rates: dict[tuple[int, int], float] = {}
    runs = [(args.baseline, "float32", True)] if args.baseline else []
    runs += [
        (model, precision, False) for model in args.models for precision in ("float32", "int8")
    ]
    loaded = []
    for model, precision, is_baseline in runs:
        path = resolve(model)
        bundle = load(path)
        lowercase = bundle.card.tokenizer.lowercase
        test_file = "atis/test" if bundle.card.tokenizer.style == "atis" else "conll2003/test.txt"
        test = read_dataset(root / test_file)
        predictor = Predictor(with_precision(bundle, precision), batch_size=128, cache_words=50_000)
        sentences = [[t.lower() for t in e.tokens] if lowercase else e.tokens for e in test]
        name = f"{bundle.card.name} {bundle.card.version}" + (" (baseline)" if is_baseline else "")
        row: dict[str, Any] = {
            "model": name,
            "precision": precision,
            **accuracy(predictor, test, lowercase),
        }
        rows.append(row)
        loaded.append((path, precision, test, predictor, sentences))
    # Speed in interleaved rounds (every variant once a round), the median of each: this
    # machine drifts within minutes, and a ratio to the baseline needs both timed alike.
    timings: list[dict[str, list[float]]] = [{} for _ in rows]
    for _ in range(args.rounds):
        for row_timings, (_, _, _, predictor, sentences) in zip(timings, loaded, strict=True):
            cold = Predictor(predictor.bundle, batch_size=128)
            for column, value in (
                ("tok/s b=1", tokens_per_second(predictor, sentences, 1)),
                ("tok/s b=128", tokens_per_second(predictor, sentences, 128)),
                ("tok/s b=128 no cache", tokens_per_second(cold, sentences, 128)),
            ):
                row_timings.setdefault(column, []).append(value)
    for row, row_timings, (path, precision, test, predictor, _) in zip(
        rows, timings, loaded, strict=True
    ):
        row.update({column: statistics.median(v) for column, v in row_timings.items()})
        if precision == "float32":  # the bound is float32 GEMM's; int8 runs other kernels
            bound_1, bound_128 = gemm_bound(predictor, rates)
            row["bound share b=1"] = row["tok/s b=1"] / bound_1
            row["bound share b=128"] = row["tok/s b=128"] / bound_128
        if not args.no_service:
            bodies = [{"text": detokenize(e.tokens)[0]} for e in test[:2000]]
            row.update(serve(path, precision, bodies, args.seconds))
        print(row, flush=True)
    print_table(rows, rates)


def print_table(rows: list[dict[str, Any]], rates: dict[tuple[int, int], float]) -> None:
    """The markdown table README and docs/benchmarks.md carry, then the ratios to the baseline."""
    columns = [
        "F1 as-is",
        "F1 lower",
        "F1 upper",
        "intent",
        "tok/s b=1",
        "tok/s b=128",
        "tok/s b=128 no cache",
        "bound share b=1",
        "bound share b=128",
        "req/s",
        "p99 ms",
        "errors",
        "PSS MB",
    ]
    columns = [c for c in columns if any(c in row for row in rows)]
    print()
    print("| model | precision | " + " | ".join(columns) + " |")
    print("|---|---|" + "---:|" * len(columns))
    for row in rows:
        cells = []
        for column in columns:
            value = row.get(column)
            if value is None:
                cells.append("")
            elif column.startswith("bound"):
                cells.append(f"{100 * value:.0f}%")
            elif column.startswith(("tok/s", "req/s", "PSS", "errors")):
                cells.append(f"{value:,.0f}")
            else:
                cells.append(f"{value:.2f}")
        print(f"| {row['model']} | {row['precision']} | " + " | ".join(cells) + " |")
    print()
    print(
        "GEMM rates this run (GFLOP/s, one thread): "
        + ", ".join(f"batch {b} x hidden {h}: {rate:.1f}" for (b, h), rate in sorted(rates.items()))
    )
    baseline = next((r for r in rows if r["model"].endswith("(baseline)")), None)
    if baseline:
        for row in rows:
            if row is baseline:
                continue
            ratios = [
                f"{c} {row[c] / baseline[c]:.2f}x"
                for c in ("tok/s b=1", "tok/s b=128", "tok/s b=128 no cache", "req/s")
                if c in row
            ]
            print(f"{row['model']} {row['precision']} vs {baseline['model']}: " + ", ".join(ratios))


if __name__ == "__main__":
    main()
