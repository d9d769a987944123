"""``tagserve train | evaluate | serve | tag``.

Each sub-command imports its package lazily, so ``tagserve serve`` works without the training
extra installed and ``tagserve train`` never loads the web stack.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run one sub-command; returns the process exit code."""
    parser = argparse.ArgumentParser(prog="tagserve", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a model from a TOML or YAML config")
    train.add_argument("config", type=Path)
    train.add_argument("--output", type=Path, required=True, help="artifact directory to write")
    train.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    train.add_argument(
        "--data-dir", type=Path, default=None, help="default: $TAGSERVE_DATA_DIR or ../shared/data"
    )
    train.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    train.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    train.add_argument(
        "--force", action="store_true", help="overwrite an artifact already at --output"
    )
    train.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one config value, e.g. --set model.rnn=gru (repeatable)",
    )

    evaluate = commands.add_parser("evaluate", help="entity-level P/R/F1 of a model on gold data")
    evaluate.add_argument("model", help="shipped model name (ner, slots) or artifact directory")
    evaluate.add_argument(
        "--data", type=Path, required=True, help="CoNLL file or seq.in/seq.out folder"
    )
    evaluate.add_argument("--format", choices=["conll", "bio", "auto"], default="auto")
    evaluate.add_argument("--json", type=Path, default=None, help="also write the metrics here")
    evaluate.add_argument(
        "--casing",
        choices=["as-is", "lower", "upper"],
        default="as-is",
        help="re-case every token of the data first (tags unchanged): how the model fares on "
        "text typed in another casing",
    )

    serve = commands.add_parser("serve", help="start the HTTP service")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=_port, default=8000, help="0-65535 (default 8000)")
    serve.add_argument(
        "--workers",
        type=_positive,
        default=None,
        help="HTTP worker processes sharing the model workers (default: $TAGSERVE_WORKERS, "
        "else the cores available to the process)",
    )

    tag = commands.add_parser("tag", help="tag raw text lines, write JSON lines")
    tag.add_argument(
        "input", nargs="?", default="-", help="text file, one text per line (default or -: stdin)"
    )
    tag.add_argument("--model", default="ner", help="shipped model name or artifact directory")
    tag.add_argument("--output", type=Path, default=None, help="JSON lines file (default: stdout)")
    tag.add_argument("--batch-size", type=int, default=64, help="lines tagged together")
    tag.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes tagging chunks of lines (default 1: tag in this process)",
    )
    tag.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="default: cpu")

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    handlers = {"train": _train, "evaluate": _evaluate, "serve": _serve, "tag": _tag}
    try:
        return handlers[args.command](args)
    except KeyboardInterrupt:
        return 130


def _port(value: str) -> int:
    """A TCP port number, checked before anything is loaded."""
    if not value.isdigit() or not 0 <= int(value) <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number 0-65535, got {value!r}")
    return int(value)


def _positive(value: str) -> int:
    """A count of at least 1, checked before anything is loaded."""
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {value!r}")
    return int(value)


def _fail(message: str) -> int:
    print(f"tagserve: error: {message}", file=sys.stderr)
    return 2


def _train(args: argparse.Namespace) -> int:
    import time

    import torch

    from tagserve.training.config import load_config
    from tagserve.training.readers import DataError
    from tagserve.training.trainer import train

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        config = load_config(args.config, args.overrides)
        if (args.output / "config.json").exists() and not args.force:
            return _fail(
                f"--output {args.output} already holds a model artifact; "
                "pass --force to overwrite it"
            )
        started = time.monotonic()
        result = train(
            config, args.output, args.device, args.data_dir, progress=not args.no_progress
        )
    except (DataError, ValueError, FileNotFoundError, RuntimeError) as error:
        return _fail(str(error))
    summary = {
        "output": str(args.output),
        "best_epoch": result["best_epoch"],
        "dev_f1": result["dev"]["f1"],
        "test_f1": result.get("test", {}).get("f1"),
        "training_minutes": round((time.monotonic() - started) / 60, 1),
    }
    print(json.dumps(summary))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from tagserve.model.artifact import ArtifactError, resolve
    from tagserve.model.predictor import Predictor
    from tagserve.training.evaluate import evaluate, format_table, recase_example
    from tagserve.training.readers import DataError, read_dataset

    try:
        predictor = Predictor.from_path(resolve(args.model))
        examples = read_dataset(args.data, args.format)
    except (ArtifactError, DataError) as error:
        return _fail(str(error))
    if args.casing != "as-is":
        examples = [recase_example(example, args.casing) for example in examples]
    metrics = evaluate(predictor, examples)
    print(format_table(metrics))
    if args.json:
        args.json.write_text(json.dumps(metrics, indent=1) + "\n", encoding="utf-8")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from tagserve.service.runtime.serve import run

    run(host=args.host, port=args.port, workers=args.workers)
    return 0


def _tag(args: argparse.Namespace) -> int:
    from tagserve.text.bulk import progress_bar, tag_lines_parallel
    from tagserve.text.offline import tag_lines

    if args.batch_size < 1:
        return _fail(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.workers < 1:
        return _fail(f"--workers must be at least 1, got {args.workers}")
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            return _fail(
                "--device: cuda requested but no CUDA device is available "
                f"(torch {torch.__version__})"
            )
    with contextlib.ExitStack() as files:
        try:
            source = (
                sys.stdin
                if args.input == "-"
                else files.enter_context(open(args.input, encoding="utf-8"))
            )
            sink = (
                files.enter_context(args.output.open("w", encoding="utf-8"))
                if args.output
                else sys.stdout
            )
        except OSError as error:
            return _fail(f"cannot open {error.filename}: {error.strerror}")
        progress = files.enter_context(
            progress_bar(None if args.input == "-" else Path(args.input))
        )
        try:
            if args.workers == 1:
                return tag_lines(source, sink, args.model, args.batch_size, args.device, progress)
            return tag_lines_parallel(
                source, sink, args.model, args.batch_size, args.workers, args.device, progress
            )
        except UnicodeDecodeError as error:
            return _fail(f"{args.input}: not UTF-8 text ({error.reason} at byte {error.start})")


if __name__ == "__main__":
    raise SystemExit(main())
