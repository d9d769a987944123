"""Own data, end to end: reference sets as annotation-tool exports, trained without a config.

The exports are trained with ``tagserve train`` and no config file, against the same training
from the original files.

    python -m bench.own_data                      # both comparisons, seed 1
    python -m bench.own_data --seeds 1 2 3        # and the mean difference over seeds
    python -m bench.own_data --only roundtrip --conll-epochs 8
    python -m bench.own_data --only atis --atis-epochs 15

(a) ``roundtrip``: CoNLL-2003 train and valid written as Label Studio JSON (one task per
sentence: the tokens joined by spaces, a ``labels`` result per entity), trained with the
default recipe; the same run from the CoNLL columns (same seed, epochs and recipe). Both are
scored on the CoNLL test file.

(b) ``atis``: ATIS train and dev written as doccano JSONL (``label`` offsets, the intent in
``cats``), trained with no config (``--tokenizer atis --lowercase``), against the shipped
recipe ``training/configs/atis-joint.toml``, both for the same epochs. Both are scored on the
``atis/test`` folder (slot F1, intent accuracy), and by ``tagserve evaluate`` on the test
split written as doccano JSONL too (exact character spans, as the service answers).

Every run is a ``tagserve train`` process with one torch thread, one after another. The
exports live in a temporary folder (never in the repository); models and logs go to
``--work`` (default ``runs/own-data``), and a run whose scored model is there already is not
trained again. The figures are printed as JSON lines and a markdown table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tagserve.model.schemes import spans_from_tags
from tagserve.training.config import data_dir
from tagserve.training.readers import Example, read_dataset

CREATED = "2024-05-01T10:00:00.000000Z"


def text_and_spans(example: Example) -> tuple[str, list[tuple[int, int, str]]]:
    """The tokens joined by single spaces, and a character span per BIO entity."""
    offsets, position = [], 0
    for token in example.tokens:
        offsets.append((position, position + len(token)))
        position += len(token) + 1
    spans = [
        (offsets[s.start][0], offsets[s.end - 1][1], s.label)
        for s in spans_from_tags(example.tags, "BIO")
    ]
    return " ".join(example.tokens), spans


def label_studio(examples: list[Example], path: Path) -> Path:
    """A Label Studio JSON export: one task per sentence, one annotation of ``labels``."""
    tasks = []
    for n, example in enumerate(examples, start=1):
        text, spans = text_and_spans(example)
        result = [
            {
                "id": f"r{n}-{i}",
                "from_name": "label",
                "to_name": "text",
                "type": "labels",
                "origin": "manual",
                "value": {"start": s, "end": e, "text": text[s:e], "labels": [label]},
            }
            for i, (s, e, label) in enumerate(spans)
        ]
        annotation = {
            "id": n,
            "result": result,
            "was_cancelled": False,
            "created_at": CREATED,
            "updated_at": CREATED,
        }
        tasks.append({"id": n, "data": {"text": text}, "annotations": [annotation]})
    path.write_text(json.dumps(tasks, ensure_ascii=False), encoding="utf-8")
    return path


def doccano(examples: list[Example], path: Path) -> Path:
    """doccano JSONL: ``label`` as [start, end, type] in UTF-16 units (ATIS is ASCII, so the
    same as code points), the intent in ``cats`` (a multi-intent label kept whole)."""
    lines = []
    for n, example in enumerate(examples, start=1):
        text, spans = text_and_spans(example)
        record: dict[str, Any] = {"id": n, "text": text, "label": [list(s) for s in spans]}
        if example.intent is not None:
            record["cats"] = [example.intent]
        lines.append(json.dumps(record, ensure_ascii=False))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def train(name: str, arguments: list[str], work: Path, seed: int) -> dict[str, Any]:
    """One ``tagserve train`` process (unless its scored artifact is there from an earlier
    run); its card's scores, minutes and the readers' report."""
    name = f"{name}-s{seed}"
    output = work / name
    command = [sys.executable, "-m", "tagserve", "train", *arguments, "--output", str(output)]
    command += ["--threads", "1", "--no-progress", "--force", "--set", f"training.seed={seed}"]
    log = work / f"{name}.log"
    started = time.monotonic()
    card_file = output / "metadata.json"
    if not (card_file.exists() and "test_metrics" in card_file.read_text() and log.exists()):
        with log.open("w") as sink:
            subprocess.run(command, stdout=sink, stderr=subprocess.STDOUT, check=True)
    card = json.loads(card_file.read_text())
    lines = log.read_text().splitlines()
    report = [line for line in lines if not line.startswith(("{", "INFO"))][:12]
    test = card["test_metrics"]
    return {
        "run": name,
        "seed": seed,
        "test_f1": test["f1"],
        **({"test_intent_accuracy": test["intent_accuracy"]} if "intent_accuracy" in test else {}),
        "dev_f1": card["dev_metrics"]["f1"],
        "best_epoch": card["best_epoch"],
        "epochs_run": len(card["history"]),
        "training_minutes": card["training_minutes"],
        "wall_minutes": round((time.monotonic() - started) / 60, 1),
        "command": "tagserve train " + " ".join(arguments),
        "report": report,
    }


def span_scores(model: Path, data: Path, work: Path) -> dict[str, Any]:
    """``tagserve evaluate`` on an export: exact character spans (and intents)."""
    out = work / f"{model.name}-{data.stem}.json"
    command = [sys.executable, "-m", "tagserve", "evaluate", str(model), "--data", str(data)]
    subprocess.run([*command, "--json", str(out)], check=True, capture_output=True)
    metrics = json.loads(out.read_text())
    keys = ("f1", "intent_accuracy", "unreachable_gold", "gold_spans")
    return {key: metrics[key] for key in keys if key in metrics}


def roundtrip(root: Path, exports: Path, work: Path, epochs: int, seed: int) -> list[dict]:
    conll = root / "conll2003"
    train_json = label_studio(read_dataset(conll / "train.txt", "conll"), exports / "train.json")
    valid_json = label_studio(read_dataset(conll / "valid.txt", "conll"), exports / "valid.json")
    common = ["--test", str(conll / "test.txt"), "--set", f"training.epochs={epochs}"]
    studio = train(
        "conll-label-studio",
        ["--train", str(train_json), "--dev", str(valid_json), *common],
        work,
        seed,
    )
    columns = train(
        "conll-columns",
        ["--train", str(conll / "train.txt"), "--dev", str(conll / "valid.txt"), *common],
        work,
        seed,
    )
    return [studio, columns]


def atis(root: Path, exports: Path, work: Path, epochs: int, seed: int) -> list[dict]:
    folder = root / "atis"
    jsonl = {
        split: doccano(read_dataset(folder / split, "bio"), exports / f"atis-{split}.jsonl")
        for split in ("train", "dev", "test")
    }
    test = ["--test", str(folder / "test"), "--set", f"training.epochs={epochs}"]
    no_config = train(
        "atis-doccano",
        [
            *("--train", str(jsonl["train"]), "--dev", str(jsonl["dev"])),
            *("--tokenizer", "atis", "--lowercase", "--offsets", "utf16", *test),
        ],
        work,
        seed,
    )
    recipe = Path(__file__).resolve().parent.parent / "training/configs/atis-joint.toml"
    shipped = train("atis-joint", [str(recipe), "--data-dir", str(root), *test], work, seed)
    for result in (no_config, shipped):
        result["test_spans"] = span_scores(work / result["run"], jsonl["test"], work)
    return [no_config, shipped]


def table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| run | test F1 | test intent acc. | span F1 (evaluate) | span intent acc. | best epoch "
        "| minutes |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        spans = r.get("test_spans", {})
        cells = [
            r["run"],
            f"{r['test_f1']:.2f}",
            f"{r['test_intent_accuracy']:.2f}" if "test_intent_accuracy" in r else "",
            f"{spans['f1']:.2f}" if "f1" in spans else "",
            f"{spans['intent_accuracy']:.2f}" if "intent_accuracy" in spans else "",
            f"{r['best_epoch']} of {r['epochs_run']}",
            f"{r['training_minutes']}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary(results: list[dict[str, Any]]) -> str:
    """Mean ± standard deviation over seeds of each run's test figures (markdown)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for result in results:
        groups.setdefault(result["run"].rsplit("-s", 1)[0], []).append(result)
    lines = ["| run | seeds | test F1 | test intent acc. |", "|---|---|---|---|"]
    for run, rows in groups.items():
        cells = []
        for key in ("test_f1", "test_intent_accuracy"):
            values = [r[key] for r in rows if key in r]
            spread = f" ± {statistics.stdev(values):.2f}" if len(values) > 1 else ""
            cells.append(f"{statistics.mean(values):.2f}{spread}" if values else "")
        lines.append(f"| {run} | {len(rows)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def differences(pair: list[dict[str, Any]]) -> dict[str, float]:
    """Export-trained minus reference, per figure both runs have."""
    keys = [k for k in ("test_f1", "test_intent_accuracy") if k in pair[0] and k in pair[1]]
    return {k: round(pair[0][k] - pair[1][k], 2) for k in keys}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["roundtrip", "atis"], default=None)
    parser.add_argument("--conll-epochs", type=int, default=8)
    parser.add_argument("--atis-epochs", type=int, default=15)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--work", type=Path, default=Path("runs/own-data"))
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    root = data_dir(args.data_dir).resolve()
    args.work.mkdir(parents=True, exist_ok=True)
    results: list[dict[str, Any]] = []
    deltas: dict[str, list[dict[str, float]]] = {"roundtrip": [], "atis": []}
    targets = {"roundtrip": 0.3, "atis": 0.5}
    with tempfile.TemporaryDirectory(prefix="own-data-") as folder:
        exports = Path(folder)
        for seed in args.seeds:
            for name, run in (("roundtrip", roundtrip), ("atis", atis)):
                if args.only not in (None, name):
                    continue
                epochs = args.conll_epochs if name == "roundtrip" else args.atis_epochs
                pair = run(root, exports, args.work, epochs, seed)
                results += pair
                deltas[name].append(differences(pair))
                line = {"comparison": name, "seed": seed, **deltas[name][-1]}
                print(json.dumps({**line, "target": targets[name]}), flush=True)
    for result in results:
        print(json.dumps(result), flush=True)
    print(table(results))
    print(summary(results))
    for name, rows in deltas.items():
        if rows:
            means = {k: round(statistics.mean(r[k] for r in rows), 2) for k in rows[0]}
            print(
                json.dumps({"comparison": name, "seeds": args.seeds, "mean_difference": means}),
                flush=True,
            )


if __name__ == "__main__":
    main()
