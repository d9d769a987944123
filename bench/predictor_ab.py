"""Predictor speed at two revisions, interleaved in time, and where a batch's time goes.

    python -m bench.predictor_ab --before REV [--after REV] [--model ner] [--rounds 5]

On a machine whose speed drifts by tens of percent, two separate runs cannot tell a 5% change
from noise; this runs both in one. Each revision gets a worker process of its own (its files
from ``git archive REV``; without ``--after``, this working tree), loading the same artifact
and data; the parent alternates between them, each going first every other round. One torch
thread, word cache on (50,000 words) and warm, CoNLL-2003 test in its natural order: the first
400 sentences at batch 1 and the first 1,280 at batch 128, as ``bench.quantization`` times
them. Prints tokens/s per round, the medians and their ratio; each revision's share of a
batch per stage (timers wrapped around the predictor's stages: word features from the cache
and, for unseen words, the char CNN; the LSTM; the rest of ``encode``, i.e. packing; the
output layer; CRF decoding; everything else), warm and with a cold cache; and whether both
revisions give identical tags and scores on all of CoNLL-2003 test at batch 1 and 128.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
STAGES = ["features", "char CNN", "LSTM", "packing", "emissions", "CRF decode", "rest"]
# "packing": the rest of Tagger.encode (pack_padded_sequence, dropout); "rest": predict()
# outside the stages (sorting, batching, tag names).


def tree(revision: str, into: Path) -> Path:
    """The files of ``revision`` unpacked under ``into`` (no change to the repository)."""
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", revision],
        check=True,
        capture_output=True,
    ).stdout
    into.mkdir(parents=True)
    with tempfile.TemporaryFile() as buffer:
        buffer.write(archive)
        buffer.seek(0)
        with tarfile.open(fileobj=buffer) as tar:
            tar.extractall(into, filter="tar")
    return into


class Worker:
    """One revision's predictor in a process of its own, driven by JSON lines."""

    def __init__(self, root: Path, model: Path, data: Path) -> None:
        env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--worker", "--model", str(model), "--data-dir", str(data)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            cwd=root,
            text=True,
        )
        # The worker's first line: where its tagserve package was imported from.
        self.package = self.ask()["tagserve"]

    def ask(self, **request: Any) -> Any:
        """Send ``request`` (none: just read) and return the worker's answer."""
        assert self.process.stdin is not None and self.process.stdout is not None
        if request:
            self.process.stdin.write(json.dumps(request) + "\n")
            self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"worker ended (exit {self.process.wait()})")
        return json.loads(line)

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(timeout=30)


def serve_requests(model: str, data: str) -> None:
    """The worker's side: imports whatever ``tagserve`` its PYTHONPATH holds."""
    import torch
    from torch import nn

    import tagserve
    from tagserve.model.artifact import load
    from tagserve.model.feature_cache import WordFeatureCache
    from tagserve.model.network import Tagger
    from tagserve.model.predictor import Predictor
    from tagserve.training.config import data_dir
    from tagserve.training.readers import read_dataset

    torch.set_num_threads(1)
    sentences = [e.tokens for e in read_dataset(data_dir(data) / "conll2003/test.txt")]
    bundle = load(Path(model))
    warm = Predictor(bundle, batch_size=128, cache_words=50_000)
    warm.predict(sentences)
    spent: dict[str, float] = defaultdict(float)

    def timed(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                spent[name] += time.perf_counter() - started

        return wrapper

    def stages(predictor: Predictor, chunk: list[list[str]], batch: int) -> dict[str, float]:
        """Share of each stage over one pass, timers wrapped around this revision's code."""
        originals = {
            "batch": WordFeatureCache.batch,
            "_add": WordFeatureCache._add,
            "encode": Tagger.encode,
            "emissions": Tagger.emissions,
            "decode": Tagger.decode,
        }
        spent.clear()
        WordFeatureCache.batch = timed("features+", originals["batch"])  # type: ignore[method-assign]
        WordFeatureCache._add = timed("char CNN", originals["_add"])  # type: ignore[method-assign]
        Tagger.encode = timed("encode+", originals["encode"])  # type: ignore[method-assign]
        Tagger.emissions = timed("emissions", originals["emissions"])  # type: ignore[method-assign]
        Tagger.decode = timed("CRF decode", originals["decode"])  # type: ignore[method-assign]
        rnn: nn.Module = bundle.network.rnn
        rnn.forward = timed("LSTM", rnn.forward)  # type: ignore[method-assign]
        # Revisions that run the LSTM's directions themselves (padded runs) do it here.
        direction = getattr(Tagger, "_direction", None)
        if direction is not None:
            Tagger._direction = timed("LSTM", direction)  # type: ignore[attr-defined]
        try:
            started = time.perf_counter()
            for i in range(0, len(chunk), batch):
                predictor.predict(chunk[i : i + batch])
            total = time.perf_counter() - started
        finally:
            for name, function in originals.items():
                setattr(WordFeatureCache if name in ("batch", "_add") else Tagger, name, function)
            del rnn.forward
            if direction is not None:
                Tagger._direction = direction  # type: ignore[attr-defined]
        shares = {
            "features": spent["features+"] - spent["char CNN"],
            "char CNN": spent["char CNN"],
            "LSTM": spent["LSTM"],
            "packing": spent["encode+"] - spent["LSTM"],
            "emissions": spent["emissions"],
            "CRF decode": spent["CRF decode"],
        }
        shares["rest"] = total - sum(shares.values())
        return {name: value / total for name, value in shares.items()}

    print(json.dumps({"tagserve": str(Path(tagserve.__file__).resolve())}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        batch = request.get("batch", 128)
        chunk = sentences[: 400 if batch == 1 else 1280]
        warm.batch_size = batch
        if request["op"] == "time":
            started = time.perf_counter()
            for i in range(0, len(chunk), batch):
                warm.predict(chunk[i : i + batch])
            answer: Any = sum(map(len, chunk)) / (time.perf_counter() - started)
        elif request["op"] == "stages":
            cold = request.get("cold", False)
            predictor = Predictor(bundle, batch_size=batch, cache_words=50_000) if cold else warm
            answer = stages(predictor, chunk, batch)
        else:  # outputs
            answer = [[r.tags, r.scores] for r in warm.predict(sentences)]
        print(json.dumps(answer), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", help="a git revision (required)")
    parser.add_argument("--after", default=None, help="a git revision (default: this tree)")
    parser.add_argument("--model", default="ner", help="a shipped name or an artifact directory")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        serve_requests(args.model, args.data_dir)
        return
    if not args.before:
        parser.error("--before REV is required")
    from tagserve.model.artifact import resolve
    from tagserve.training.config import data_dir

    model, data = resolve(args.model).resolve(), data_dir(args.data_dir).resolve()
    with tempfile.TemporaryDirectory() as scratch:
        roots = {
            "before": tree(args.before, Path(scratch) / "before"),
            "after": tree(args.after, Path(scratch) / "after") if args.after else REPO,
        }
        workers = {name: Worker(root, model, data) for name, root in roots.items()}
        try:
            run(args, workers, model)
        finally:
            for worker in workers.values():
                worker.close()


def run(args: argparse.Namespace, workers: dict[str, Worker], model: Path) -> None:
    """The interleaved timing, stage shares and output check; prints everything."""
    after = args.after or "working tree"
    print(
        f"model={model} before={args.before} after={after} cores={os.cpu_count()} "
        f"torch_threads=1 rounds={args.rounds}"
    )
    for name, worker in workers.items():
        print(f"{name}: tagserve from {worker.package}")
        worker.ask(op="time", batch=128)  # warm-up
    speeds: dict[tuple[str, int], list[float]] = defaultdict(list)
    for round_index in range(args.rounds):
        names = list(workers) if round_index % 2 == 0 else list(workers)[::-1]
        cells = []
        for batch in (1, 128):
            for name in names:
                speeds[name, batch].append(workers[name].ask(op="time", batch=batch))
            cells += [f"b={batch} {n} {speeds[n, batch][-1]:,.0f}" for n in workers]
        print(f"round {round_index + 1}: tokens/s " + ", ".join(cells), flush=True)
    print(f"\n| tokens/s (median of {args.rounds}) | before | after | after/before |")
    print("|---|---:|---:|---:|")
    for batch in (1, 128):
        before = statistics.median(speeds["before", batch])
        later = statistics.median(speeds["after", batch])
        print(f"| batch {batch} | {before:,.0f} | {later:,.0f} | {later / before:.3f} |")
    print("\nShare of a pass per stage (word cache on, 50,000 words):\n")
    print("| revision | pass | " + " | ".join(STAGES) + " |")
    print("|---|---|" + "---:|" * len(STAGES))
    for name, worker in workers.items():
        for batch, cold in ((1, False), (128, False), (128, True)):
            shares = worker.ask(op="stages", batch=batch, cold=cold)
            label = f"batch {batch}, " + ("cold cache" if cold else "warm cache")
            cells = " | ".join(f"{100 * shares[s]:.1f}%" for s in STAGES)
            print(f"| {name} | {label} | {cells} |", flush=True)
    print()
    for batch in (1, 128):
        outputs = {name: worker.ask(op="outputs", batch=batch) for name, worker in workers.items()}
        pairs = list(zip(outputs["before"], outputs["after"], strict=True))
        same_tags = sum(a[0] == b[0] for a, b in pairs)
        same_scores = sum(a[1] == b[1] for a, b in pairs)
        gap = max(abs(x - y) for a, b in pairs for x, y in zip(a[1], b[1], strict=True))
        print(
            f"CoNLL-2003 test, batch {batch}: identical tags in {same_tags}/{len(pairs)} "
            f"sentences, identical scores in {same_scores}/{len(pairs)} "
            f"(largest score difference {gap:.1e})"
        )


if __name__ == "__main__":
    main()
