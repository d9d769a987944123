"""How much data a user needs: the default recipe (training/recipe.py, what ``tagserve train
--train FILE`` uses) trained on growing subsets of CoNLL-2003 and ATIS, 3 seeds each.

    python -m bench.learning_curve run --jobs 2            # trains what is not done yet
    python -m bench.learning_curve run --jobs 2 --only atis --init ner
    python -m bench.learning_curve report                  # the markdown table

Subsets are the first N sentences of train after one fixed shuffle (seed 0): the same
sentences for every seed and every variant, so seeds vary the training only. Dev (model
selection) and test are the full splits. Each run is ``tagserve train`` on a config file that
:func:`tagserve.training.recipe.default_sections` writes for the subset's size, with one
torch thread; results (F1 on test as-is and lower-cased, intent accuracy, training minutes)
are appended to ``runs/learning-curve/results.jsonl``, so an interrupted sweep resumes.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tagserve.model.schemes import entity_types
from tagserve.training.config import data_dir
from tagserve.training.readers import Example, read_dataset
from tagserve.training.recipe import default_sections

ROOT = Path("runs/learning-curve")
SIZES = {"conll2003": [250, 1000, 4000, None], "atis": [250, 1000, None]}
SEEDS = [1, 2, 3]
# Where each corpus lives under the data directory, and how the served model reads it.
CORPORA: dict[str, dict[str, Any]] = {
    "conll2003": {
        "train": "conll2003/train.txt",
        "dev": "conll2003/valid.txt",
        "test": "conll2003/test.txt",
        "format": "conll",
        "tokenizer": "conll",
        "lowercase": False,
    },
    "atis": {
        "train": "atis/train",
        "dev": "atis/dev",
        "test": "atis/test",
        "format": "bio",
        "tokenizer": "atis",
        "lowercase": True,
    },
}


def subset(corpus: str, size: int | None, root: Path) -> tuple[Path, list[Example]]:
    """Write (once) the first ``size`` sentences of the shuffled train split; all when None."""
    spec = CORPORA[corpus]
    examples = read_dataset(root / spec["train"], spec["format"])
    if size is None:
        return root / spec["train"], examples
    order = list(range(len(examples)))
    random.Random(0).shuffle(order)
    chosen = [examples[i] for i in sorted(order[:size])]
    target = ROOT / "data" / f"{corpus}-{size}"
    if corpus == "conll2003":
        target = target.with_suffix(".txt")
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            lines = [
                "\n".join(f"{t} {g}" for t, g in zip(e.tokens, e.tags, strict=True)) for e in chosen
            ]
            target.write_text("\n\n".join(lines) + "\n", encoding="utf-8")
    elif not target.exists():
        target.mkdir(parents=True)
        (target / "seq.in").write_text("".join(" ".join(e.tokens) + "\n" for e in chosen))
        (target / "seq.out").write_text("".join(" ".join(e.tags) + "\n" for e in chosen))
        (target / "label").write_text("".join(f"{e.intent}\n" for e in chosen))
    return target, chosen


def write_config(corpus: str, train: Path, chosen: list[Example], root: Path, out: Path) -> Path:
    """The default recipe for this subset as a TOML config (what ``--train`` would resolve)."""
    spec = CORPORA[corpus]
    types = entity_types([t for e in chosen for t in e.tags])
    has_intents = all(e.intent for e in chosen)
    sections = default_sections(
        len(chosen), len(types), has_intents, spec["tokenizer"], spec["lowercase"]
    )
    sections["data"] = {
        "train": str(train.resolve()),
        "dev": str((root / spec["dev"]).resolve()),
        "test": str((root / spec["test"]).resolve()),
        "format": spec["format"],
    }
    sections["artifact"].update(name=f"lc-{corpus}", version="0")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(_toml(sections), encoding="utf-8")
    return out


def _toml(sections: dict[str, Any]) -> str:
    """Tables of scalars and one level of sub-tables: all a recipe needs."""
    lines: list[str] = []

    def table(name: str, values: dict[str, Any]) -> None:
        lines.append(f"[{name}]")
        nested = {k: v for k, v in values.items() if isinstance(v, dict)}
        for key, value in values.items():
            if not isinstance(value, dict):
                lines.append(f"{key} = {json.dumps(value)}")
        lines.append("")
        for key, value in nested.items():
            table(f"{name}.{key}", value)

    for name in ("data", "model", "training", "artifact"):
        table(name, sections[name])
    text = "\n".join(lines)
    tomllib.loads(text)  # what we write must read back
    return text


def run_one(corpus: str, size: int | None, seed: int, init: str | None, root: Path) -> dict:
    """Train one run (unless its artifact exists) and score it on test, as-is and lower-cased."""
    label = f"{corpus}-{size or 'all'}{'-init-' + init if init else ''}-s{seed}"
    train, chosen = subset(corpus, size, root)
    config = write_config(corpus, train, chosen, root, ROOT / "configs" / f"{label}.toml")
    output = ROOT / "models" / label
    if not (output / "metadata.json").exists() or "test_metrics" not in _card(output):
        command = [sys.executable, "-m", "tagserve", "train", str(config), "--output", str(output)]
        command += ["--threads", "1", "--no-progress", "--force", "--set", f"training.seed={seed}"]
        if init:
            command += ["--init", init]
        log = ROOT / "logs" / f"{label}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("w") as sink:
            subprocess.run(command, stdout=sink, stderr=subprocess.STDOUT, check=True)
    card = _card(output)
    result = {
        "corpus": corpus,
        "size": size or len(chosen),
        "all": size is None,
        "init": init,
        "seed": seed,
        "best_epoch": card["best_epoch"],
        "dev_f1": card["dev_metrics"]["f1"],
        "test_f1": card["test_metrics"]["f1"],
        "training_minutes": card["training_minutes"],
    }
    if "intent_accuracy" in card["test_metrics"]:
        result["intent_accuracy"] = card["test_metrics"]["intent_accuracy"]
    if corpus == "conll2003":
        result["test_f1_lower"] = _lowercased_f1(output, root / CORPORA[corpus]["test"])
    return result


def _card(output: Path) -> dict[str, Any]:
    path = output / "metadata.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _lowercased_f1(output: Path, test: Path) -> float:
    import torch

    from tagserve.model.artifact import load
    from tagserve.model.predictor import Predictor
    from tagserve.training.evaluate import evaluate, recase_example

    torch.set_num_threads(1)
    examples = [recase_example(e, "lower") for e in read_dataset(test, "conll")]
    return round(evaluate(Predictor(load(output), batch_size=256), examples)["f1"], 2)


def done() -> list[dict[str, Any]]:
    path = ROOT / "results.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def run(args: argparse.Namespace) -> None:
    root = data_dir(args.data_dir)
    finished = {
        (r["corpus"], None if r["all"] else r["size"], r["init"], r["seed"]) for r in done()
    }
    jobs = [
        (corpus, size, seed, args.init)
        for corpus in (args.only or list(SIZES))
        for size in SIZES[corpus]
        if not (args.init and (size is None or corpus != "atis"))
        for seed in SEEDS
    ]
    jobs = [job for job in jobs if (job[0], job[1], job[3], job[2]) not in finished]
    # Largest first, so the long runs do not end the sweep alone on one core.
    jobs.sort(key=lambda job: -(job[1] or 100_000))
    print(f"{len(jobs)} runs to do", flush=True)
    ROOT.mkdir(parents=True, exist_ok=True)

    def work(job: tuple[str, int | None, int, str | None]) -> None:
        try:
            result = run_one(*job, root=root)
        except Exception as error:  # one failed run must not hide the others' results
            print(json.dumps({"job": list(job), "error": repr(error)}), flush=True)
            return
        with (ROOT / "results.jsonl").open("a") as sink:
            sink.write(json.dumps(result) + "\n")
        print(json.dumps(result), flush=True)

    with ThreadPoolExecutor(args.jobs) as pool:
        for future in [pool.submit(work, job) for job in jobs]:
            future.result()


def report(_: argparse.Namespace) -> None:
    """Mean ± sd over seeds per corpus, size and variant."""
    groups: dict[tuple[str, int, str | None], list[dict[str, Any]]] = {}
    latest = {(r["corpus"], r["size"], r["init"], r["seed"]): r for r in done()}
    for result in latest.values():
        groups.setdefault((result["corpus"], result["size"], result["init"]), []).append(result)
    columns = ["test_f1", "test_f1_lower", "intent_accuracy", "dev_f1", "training_minutes"]
    print("| data | sentences | start | seeds | " + " | ".join(columns) + " |")
    print("|---" * (4 + len(columns)) + "|")
    for (corpus, size, init), rows in sorted(
        groups.items(), key=lambda g: (g[0][0], g[0][1], g[0][2] or "")
    ):
        cells = []
        for column in columns:
            values = [r[column] for r in rows if column in r]
            if not values:
                cells.append("")
            elif len(values) == 1:
                cells.append(f"{values[0]:.2f}")
            else:
                cells.append(f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}")
        start = f"--init {init}" if init else "scratch"
        print(f"| {corpus} | {size:,} | {start} | {len(rows)} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    sweep = commands.add_parser("run")
    sweep.add_argument("--jobs", type=int, default=2, help="runs at once (one core each)")
    sweep.add_argument("--only", nargs="*", choices=list(SIZES), default=None)
    sweep.add_argument("--init", default=None, help="start ATIS runs from this model")
    sweep.add_argument("--data-dir", default=None)
    commands.add_parser("report")
    args = parser.parse_args()
    run(args) if args.command == "run" else report(args)


if __name__ == "__main__":
    main()
