"""``tagserve train | evaluate | serve | tag``.

Each sub-command imports its package lazily, so ``tagserve serve`` works without the training
extra installed and ``tagserve train`` never loads the web stack.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tagserve.model.predictor import Predictor


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run one sub-command; returns the process exit code."""
    parser = argparse.ArgumentParser(prog="tagserve", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    _add_train(commands)
    _add_evaluate(commands)

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

    _add_tag(commands)

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    handlers = {"train": _train, "evaluate": _evaluate, "serve": _serve, "tag": _tag}
    try:
        return handlers[args.command](args)
    except KeyboardInterrupt:
        return 130


DATA_FORMATS = ["auto", "conll", "bio", "label-studio", "label-studio-min", "doccano", "spans"]


def _add_train(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    train = commands.add_parser(
        "train",
        help="train a model from a TOML or YAML config, or from --train data with the "
        "default recipe",
    )
    train.add_argument(
        "config",
        type=Path,
        nargs="?",
        default=None,
        help="TOML or YAML config (optional: without it, --train and the default recipe)",
    )
    train.add_argument("--output", type=Path, required=True, help="artifact directory to write")
    data = train.add_argument_group(
        "data (without a config file; with one, these replace its [data] values)"
    )
    data.add_argument("--train", type=Path, default=None, help="training data file or folder")
    data.add_argument("--dev", type=Path, default=None, help="dev data (model selection)")
    data.add_argument(
        "--dev-split",
        type=_share,
        default=None,
        metavar="SHARE",
        help="instead of --dev: hold out this share of --train (e.g. 0.1), drawn with "
        "training.seed",
    )
    data.add_argument("--test", type=Path, default=None, help="test data, scored at the end")
    data.add_argument("--format", choices=DATA_FORMATS, default=None, help="default: auto")
    data.add_argument(
        "--misaligned",
        choices=["expand", "contract", "error"],
        default=None,
        help="a span whose ends fall inside a token (default: expand)",
    )
    data.add_argument(
        "--overlaps",
        choices=["error", "longest"],
        default=None,
        help="overlapping spans in one text (default: error)",
    )
    data.add_argument(
        "--offsets",
        choices=["codepoints", "utf16"],
        default=None,
        help="how the export counts offsets (default: codepoints; doccano: utf16)",
    )
    model = train.add_argument_group("model")
    model.add_argument(
        "--tokenizer",
        choices=["conll", "atis"],
        default=None,
        help="how the served model tokenizes raw text (default: conll)",
    )
    model.add_argument("--lowercase", action="store_true", help="the model reads lower-cased words")
    model.add_argument("--name", default=None, help="model name on its card")
    model.add_argument("--version", default=None, help="model version on its card")
    model.add_argument(
        "--vectors",
        default=None,
        metavar="FILE|none",
        help="word2vec/GloVe text vectors (.gz too), or none (default: English GloVe 6B)",
    )
    model.add_argument(
        "--init",
        default=None,
        metavar="MODEL",
        help="start from this model (shipped name or artifact directory): its weights, "
        "vocabularies and architecture",
    )
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
        help="override one config value, e.g. --set model.rnn=gru or "
        "--set training.case_augmentation.lower=0 (repeatable, applied last)",
    )


def _add_evaluate(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    evaluate = commands.add_parser(
        "evaluate",
        help="entity-level P/R/F1 of a model on gold data (exact character spans for "
        "annotation exports)",
    )
    evaluate.add_argument("model", help="shipped model name (ner, slots) or artifact directory")
    evaluate.add_argument(
        "--data",
        type=Path,
        required=True,
        help="CoNLL file, seq.in/seq.out folder or annotation export",
    )
    evaluate.add_argument("--format", choices=DATA_FORMATS, default="auto")
    evaluate.add_argument(
        "--offsets",
        choices=["codepoints", "utf16"],
        default="codepoints",
        help="how an export counts offsets",
    )
    evaluate.add_argument(
        "--misaligned",
        choices=["expand", "contract", "error"],
        default="expand",
        help="gold spans that do not fall on token boundaries",
    )
    evaluate.add_argument(
        "--overlaps", choices=["error", "longest"], default="error", help="overlapping gold spans"
    )
    evaluate.add_argument("--json", type=Path, default=None, help="also write the metrics here")
    evaluate.add_argument(
        "--casing",
        choices=["as-is", "lower", "upper"],
        default="as-is",
        help="re-case every token of the data first (tags unchanged): how the model fares on "
        "text typed in another casing",
    )


def _add_tag(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    tag = commands.add_parser(
        "tag",
        help="tag the texts of a text, JSON-lines or Parquet file or folder (here or on Ray)",
    )
    tag.add_argument(
        "input",
        nargs="?",
        default="-",
        help="text file, one text per line (default or -: stdin); .jsonl or .parquet file; or "
        "a folder of .jsonl or .parquet files",
    )
    tag.add_argument("--model", default="ner", help="shipped model name or artifact directory")
    tag.add_argument(
        "--output",
        default=None,
        help="JSON-lines file (default: stdout), .parquet file, or a folder (a path ending "
        "in / or an existing folder; Parquet when its name or the input is)",
    )
    tag.add_argument(
        "--text-field", default="text", help="the field holding the text (default: text)"
    )
    tag.add_argument(
        "--tokens",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="add the tokens with offsets and tags (default: on for a text-lines input, whose "
        "records are POST /tag's results; off otherwise)",
    )
    tag.add_argument("--batch-size", type=int, default=64, help="records tagged together")
    tag.add_argument(
        "--max-text-chars",
        type=int,
        default=None,
        help="a longer text gets an error record (default: 100000, the service's)",
    )
    tag.add_argument(
        "--engine",
        choices=["local", "ray"],
        default="local",
        help="local: this machine's processes; ray: a Ray cluster (the ray extra)",
    )
    tag.add_argument(
        "--workers",
        type=int,
        default=1,
        help="local engine: worker processes tagging chunks (default 1: tag in this process)",
    )
    tag.add_argument(
        "--actors",
        default=None,
        metavar="N|MIN,MAX",
        help="ray engine: tagging actors, or an autoscaling range (default: the cluster's "
        "CPUs / --threads)",
    )
    tag.add_argument(
        "--address",
        default=None,
        help="ray engine: the cluster to join (auto, ray://HOST:10001, HOST:6379); default: "
        "start one on this machine",
    )
    tag.add_argument("--threads", type=int, default=1, help="ray engine: torch threads per actor")
    tag.add_argument(
        "--preserve-order",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="ray engine: write records in input order (default: on)",
    )
    tag.add_argument(
        "--summary",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="print records, errors, tokens, seconds and tokens/s on stderr at the end "
        "(default: on a terminal, and with --engine ray)",
    )
    tag.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="default: cpu")


def _share(value: str) -> float:
    """A share strictly between 0 and 1, checked before anything is read."""
    try:
        share = float(value)
    except ValueError:
        share = -1.0
    if not 0 < share < 1:
        raise argparse.ArgumentTypeError(f"expected a share between 0 and 1, got {value!r}")
    return share


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

    from tagserve.training.config import data_dir
    from tagserve.training.readers import DataError
    from tagserve.training.resolve import TrainFlags, resolve_config
    from tagserve.training.trainer import RESOLVED_CONFIG, train

    if args.threads:
        torch.set_num_threads(args.threads)
    flags = TrainFlags(**{name: getattr(args, name) for name in TrainFlags.__dataclass_fields__})
    try:
        if (args.output / "config.json").exists() and not args.force:
            return _fail(
                f"--output {args.output} already holds a model artifact; "
                "pass --force to overwrite it"
            )
        started = time.monotonic()
        resolved = resolve_config(args.config, flags, args.overrides, data_dir(args.data_dir))
        result = train(
            resolved.config,
            args.output,
            args.device,
            args.data_dir,
            progress=not args.no_progress,
            train_set=resolved.train_set,
        )
    except (DataError, ValueError, FileNotFoundError, RuntimeError) as error:
        return _fail(str(error))
    summary = {
        "output": str(args.output),
        "config": str(args.output / RESOLVED_CONFIG),
        "best_epoch": result["best_epoch"],
        "dev_f1": result["dev"]["f1"],
        "test_f1": result.get("test", {}).get("f1"),
        **{
            f"{split}_intent_accuracy": result[split]["intent_accuracy"]
            for split in ("dev", "test")
            if "intent_accuracy" in result.get(split, {})
        },
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
        if _is_annotation_export(args.data, args.format):
            return _evaluate_spans(args, predictor)
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


def _is_annotation_export(path: Path, data_format: str) -> bool:
    """An annotation format named, or (``auto``) a ``.json``/``.jsonl`` file, as the
    training readers tell them."""
    if data_format == "auto":
        return path.is_file() and path.suffix.lower() in {".json", ".jsonl"}
    return data_format not in {"conll", "bio"}


def _evaluate_spans(args: argparse.Namespace, predictor: Predictor) -> int:
    """Score what the service would return for each text by exact character spans."""
    from dataclasses import replace

    from tagserve.training.annotations import AnnotationOptions, read_records
    from tagserve.training.span_eval import evaluate_spans, format_span_table

    tokenizer = predictor.bundle.card.tokenizer
    options = AnnotationOptions(
        tokenizer=tokenizer.style,
        misaligned=args.misaligned,
        overlaps=args.overlaps,
        offsets=args.offsets,
    )
    records, report = read_records(
        args.data, None if args.format == "auto" else args.format, options
    )
    for line in report.lines():
        print(line, file=sys.stderr)
    if args.casing != "as-is":
        records = [replace(r, text=_recase_text(r.text, args.casing)) for r in records]
    metrics = evaluate_spans(predictor, records, tokenizer)
    print(format_span_table(metrics))
    if args.json:
        args.json.write_text(json.dumps(metrics, indent=1) + "\n", encoding="utf-8")
    return 0


def _recase_text(text: str, casing: str) -> str:
    """``text`` lower- or upper-cased character by character, keeping every offset (a
    character whose other case is longer, such as "ß" upper-cased, stays as it is)."""
    change = str.lower if casing == "lower" else str.upper
    return "".join(c if len(change(c)) != 1 else change(c) for c in text)


def _serve(args: argparse.Namespace) -> int:
    from tagserve.service.runtime.serve import run

    run(host=args.host, port=args.port, workers=args.workers)
    return 0


def _tag(args: argparse.Namespace) -> int:
    import time

    from tagserve.model.artifact_files import ArtifactError
    from tagserve.text.answers import RecordError
    from tagserve.text.records import (
        check_columns,
        find_input,
        find_output,
        input_columns,
        make_job,
    )

    problem = _tag_option_problem(args)
    if problem:
        return _fail(problem)
    try:
        source = find_input(args.input)
        target = find_output(args.output, source)
        job = make_job(source, target, args.text_field, args.tokens, args.max_text_chars)
        check_columns(input_columns(source, job), source.name, job)
        started = time.monotonic()
        run = _tag_on_ray if args.engine == "ray" else _tag_locally
        counts = run(args, source, target, job)
    except OSError as error:
        return _fail(f"cannot open {error.filename}: {error.strerror}")
    except (ArtifactError, RecordError) as error:
        return _fail(str(error))
    except RuntimeError as error:  # a worker process or the Ray job failed
        print(f"tagserve: error: {error}", file=sys.stderr)
        return 1
    seconds = time.monotonic() - started
    if args.summary or (args.summary is None and (args.engine == "ray" or sys.stderr.isatty())):
        print(
            f"tagserve tag: {counts.records} records, {counts.errors} with an error, "
            f"{counts.tokens} tokens, {seconds:.1f} s, {counts.tokens / seconds:.0f} tokens/s",
            file=sys.stderr,
        )
    return 0


def _tag_option_problem(args: argparse.Namespace) -> str | None:
    """The first option of ``tagserve tag`` that cannot work, before anything is read."""
    for option in ("batch_size", "workers", "threads", "max_text_chars"):
        value = getattr(args, option)
        if value is not None and value < 1:
            return f"--{option.replace('_', '-')} must be at least 1, got {value}"
    if args.actors is not None:
        try:
            args.actors = _actors(args.actors)
        except ValueError:
            return f"--actors: expected N or MIN,MAX with 1 <= MIN <= MAX, got {args.actors!r}"
    if args.engine == "local" and (args.actors is not None or args.address is not None):
        return "--actors and --address are for --engine ray (the local engine takes --workers)"
    if args.engine == "ray" and args.workers != 1:
        return "--workers is for --engine local (the ray engine takes --actors)"
    if args.device == "cuda" and args.engine == "local":
        import torch

        if not torch.cuda.is_available():
            return (
                "--device: cuda requested but no CUDA device is available "
                f"(torch {torch.__version__})"
            )
    return None


def _actors(value: str) -> tuple[int, int]:
    low, _, high = value.partition(",")
    pool = (int(low), int(high or low))
    if not 1 <= pool[0] <= pool[1]:
        raise ValueError(value)
    return pool


def _tag_locally(args: argparse.Namespace, source: Any, target: Any, job: Any) -> Any:
    from tagserve.text.bulk import LoadFailed, progress_bar, tag_records_parallel
    from tagserve.text.offline import tag_records
    from tagserve.text.writer import Writer

    with Writer(target) as writer, progress_bar(source) as progress:
        try:
            if args.workers == 1:
                return tag_records(
                    source, writer, job, args.model, args.batch_size, args.device, progress
                )
            return tag_records_parallel(
                source, writer, job, args.model, args.batch_size, args.workers, args.device,
                progress,
            )  # fmt: skip
        except LoadFailed as error:
            from tagserve.text.answers import RecordError

            raise RecordError(str(error)) from None


def _tag_on_ray(args: argparse.Namespace, source: Any, target: Any, job: Any) -> Any:
    from tagserve.text.answers import RecordError

    try:
        from tagserve.text.ray_job import tag_on_cluster
    except ImportError as error:
        raise RecordError(
            f"--engine ray needs the ray extra ({error}): bash scripts/install.sh ray"
        ) from None
    return tag_on_cluster(
        source, target, job, address=args.address, actors=args.actors, model=args.model,
        batch_size=args.batch_size, threads=args.threads, device=args.device,
        preserve_order=args.preserve_order,
    )  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
