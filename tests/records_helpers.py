"""Records, commands and service answers shared by tests/test_records.py and
tests/test_ray_engine.py (the two engines of ``tagserve tag``)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
from fastapi.testclient import TestClient

from tests.service_helpers import tiny_app

ROOT = Path(__file__).resolve().parent.parent
# Short and long, empty, non-ASCII, several sentences, over 200 tokens, identifiers.
TEXTS = [
    "Harry Potter met Hermione Granger in London.",
    "",
    "Angela Merkel visited Paris on Tuesday. Then she flew to Rome!",
    "Café 東京 🙂, naïve façade.",
    " ".join(f"word{i}" for i in range(230)),
    "U.S. officials said the E.U. would meet in Brussels (Belgium) next week.",
    "mail harry@hogwarts.edu or see https://example.com #magic",
]


def many_records(count: int) -> list[dict[str, Any]]:
    """Records with extra fields of several JSON types around the text."""
    return [
        {
            "id": i,
            "text": f"{TEXTS[i % len(TEXTS)]} {i}",
            "meta": {"source": "tickets", "rank": i % 3},
            "tags": [i, i + 1],
            "note": None if i % 2 else "héllo",
        }
        for i in range(count)
    ]


def service_results(models_dir: Path, texts: list[str], tokens: bool = True) -> list[Any]:
    """What POST /tag answers for ``texts`` (in requests of up to 100 texts)."""
    results = []
    with TestClient(tiny_app(models_dir)) as client:
        for start in range(0, len(texts), 100):
            response = client.post("/tag", json={"texts": texts[start : start + 100]})
            assert response.status_code == 200, response.text
            results += response.json()["results"]
    for result in results:
        del result["text"]
        if not tokens:
            del result["tokens"]
    return results


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    """Records as JSON lines, written by orjson (as tagserve writes them)."""
    path.write_bytes(b"".join(orjson.dumps(record) + b"\n" for record in records))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def run_tag(*args: str) -> subprocess.CompletedProcess[str]:
    """``tagserve tag ARGS`` in a new process."""
    return subprocess.run(
        [sys.executable, "-m", "tagserve", "tag", *args],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


# The summary line of tagserve tag: records, errors, tokens.
SUMMARY = re.compile(
    r"tagserve tag: (\d+) records, (\d+) with an error, (\d+) tokens, [\d.]+ s, \d+ tokens/s"
)
