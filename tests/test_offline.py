"""`tagserve tag`: raw text lines in, one JSON object per line out, equal to POST /tag's."""

from __future__ import annotations

import fcntl
import importlib.util
import json
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.service_helpers import tiny_app

# Starts real processes (a tagserve serve or a tagserve command): see the slow marker.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
LINES = ["Harry Potter met Hermione Granger in London.", "", "  ", "Café 東京 🙂. Second one!"]


def run_tag(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tagserve", "tag", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def test_lines_from_stdin_equal_the_http_answers(tiny_artifact: Path) -> None:
    done = run_tag("--model", str(tiny_artifact), "--batch-size", "2", stdin="\n".join(LINES))
    assert done.returncode == 0, done.stderr
    results = [json.loads(line) for line in done.stdout.splitlines()]
    with TestClient(tiny_app(tiny_artifact.parent)) as client:
        expected = client.post("/tag", json={"texts": LINES}).json()["results"]
    assert results == expected


def test_a_file_and_an_output_file(tiny_artifact: Path, tmp_path: Path) -> None:
    source, target = tmp_path / "in.txt", tmp_path / "out.jsonl"
    source.write_text("\n".join(LINES) + "\n", encoding="utf-8")
    done = run_tag(str(source), "--model", str(tiny_artifact), "--output", str(target))
    assert done.returncode == 0, done.stderr
    assert [json.loads(line)["text"] for line in target.read_text().splitlines()] == LINES


def test_bad_input_gives_one_line_and_status_2(tiny_artifact: Path, tmp_path: Path) -> None:
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"\xff\xfe not text")
    model = ["--model", str(tiny_artifact)]
    cases = [
        ([str(tmp_path / "absent.txt"), *model], f"cannot open {tmp_path / 'absent.txt'}: No such"),
        ([str(binary), *model], f"{binary}: not UTF-8 text"),
        (["--batch-size", "0", *model], "--batch-size must be at least 1, got 0"),
        (["--workers", "0", *model], "--workers must be at least 1, got 0"),
        (["--workers", "-3", *model], "--workers must be at least 1, got -3"),
        (["--workers", "2", "--model", str(tmp_path / "nomodel")], "model artifact"),
        (["--model", str(tmp_path / "nomodel")], f"model artifact {tmp_path / 'nomodel'}"),
    ]
    for args, message in cases:
        done = run_tag(*args, stdin="x")
        assert done.returncode == 2, (args, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"tagserve: error: {message}"), lines


# Hand-written lines, repeated with a counter into a few hundred: short and long, empty,
# punctuation, non-ASCII, several sentences in one line, and one over 200 tokens.
SENTENCES = [
    "Harry Potter met Hermione Granger in London.",
    "",
    "the cat sat on the mat",
    "Angela Merkel visited Paris on Tuesday. Then she flew to Rome!",
    "Café 東京 🙂, naïve façade.",
    "   ",
    "a",
    " ".join(f"word{i}" for i in range(230)),
    "U.S. officials said the E.U. would meet in Brussels (Belgium) next week.",
]


def many_lines(count: int) -> list[str]:
    return [
        f"{SENTENCES[i % len(SENTENCES)]} {i}" if SENTENCES[i % len(SENTENCES)].strip() else ""
        for i in range(count)
    ]


def test_workers_write_the_same_bytes_in_the_same_order(
    tiny_artifact: Path, tmp_path: Path
) -> None:
    lines = many_lines(333)
    source = tmp_path / "in.txt"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    outputs = {}
    for workers in ("1", "2"):
        target = tmp_path / f"out-{workers}.jsonl"
        # Batches of 5 lines: many chunks (more than are ever in flight) and a partial last one.
        done = run_tag(
            str(source), "--model", str(tiny_artifact), "--batch-size", "5",
            "--workers", workers, "--output", str(target),
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        # stderr is a pipe, not a terminal: no progress bar, nothing at all.
        assert done.stderr == "", done.stderr
        outputs[workers] = target.read_bytes()
    assert outputs["2"] == outputs["1"]
    assert [json.loads(line)["text"] for line in outputs["2"].splitlines()] == lines


def test_workers_read_stdin_and_write_stdout(tiny_artifact: Path) -> None:
    lines = many_lines(40)
    single = run_tag("--model", str(tiny_artifact), "--batch-size", "3", stdin="\n".join(lines))
    parallel = run_tag(
        "--model", str(tiny_artifact), "--batch-size", "3", "--workers", "2",
        stdin="\n".join(lines),
    )  # fmt: skip
    assert single.returncode == parallel.returncode == 0, parallel.stderr
    assert parallel.stdout == single.stdout and parallel.stderr == ""
    assert len(parallel.stdout.splitlines()) == len(lines)


def test_workers_report_a_corrupt_model_in_one_line(tiny_artifact: Path) -> None:
    (tiny_artifact / "labels.json").unlink()
    done = run_tag("--model", str(tiny_artifact), "--workers", "2", stdin="one\ntwo\n")
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    expected = f"tagserve: error: model artifact {tiny_artifact / 'labels.json'}: file is missing"
    assert lines == [expected], done.stderr


@pytest.mark.skipif(importlib.util.find_spec("tqdm") is None, reason="tqdm is not installed")
def test_a_terminal_gets_a_progress_bar_with_lines_per_second(
    tiny_artifact: Path, tmp_path: Path
) -> None:
    source, target = tmp_path / "in.txt", tmp_path / "out.jsonl"
    source.write_text("\n".join(many_lines(120)) + "\n", encoding="utf-8")
    controller, terminal = pty.openpty()
    # 24 rows of 100 columns: a new pty has 0 columns, where tqdm draws nothing.
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    try:
        done = subprocess.run(
            [sys.executable, "-m", "tagserve", "tag", str(source), "--model", str(tiny_artifact),
             "--workers", "2", "--output", str(target)],
            stderr=terminal, stdout=subprocess.DEVNULL, timeout=120,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
        os.close(terminal)
        shown = b""
        while True:
            try:
                block = os.read(controller, 65536)
            except OSError:  # EIO: the terminal's other side is closed and drained
                break
            if not block:
                break
            shown += block
    finally:
        os.close(controller)
    assert done.returncode == 0, shown
    # The file's 120 lines are counted first, so the bar has a total (and an ETA) and ends full.
    assert b"120/120" in shown and b"lines/s" in shown, shown
    assert len(target.read_text(encoding="utf-8").splitlines()) == 120
