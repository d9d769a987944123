"""`tagserve tag`: raw text lines in, one JSON object per line out, equal to POST /tag's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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
        (["--model", str(tmp_path / "nomodel")], f"model artifact {tmp_path / 'nomodel'}"),
    ]
    for args, message in cases:
        done = run_tag(*args, stdin="x")
        assert done.returncode == 2, (args, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"tagserve: error: {message}"), lines
