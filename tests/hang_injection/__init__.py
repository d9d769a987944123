"""Setting a hang into model workers from a test (see sitecustomize.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

FOLDER = Path(__file__).parent
TOKEN_VARIABLE = "TAGSERVE_TEST_HANG_TOKEN"


def hang_on(monkeypatch: pytest.MonkeyPatch, token: str) -> None:
    """Processes started after this (model workers, servers) hang on batches with ``token``."""
    monkeypatch.setenv(TOKEN_VARIABLE, token)
    path = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", f"{FOLDER}{os.pathsep}{path}" if path else str(FOLDER))
