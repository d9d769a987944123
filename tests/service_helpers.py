"""Building apps over the tiny random-weight model for service tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI

from tagserve.service.api.app import create_app
from tagserve.service.settings import Settings


def tiny_app(models_dir: Path, **overrides: Any) -> FastAPI:
    """An app serving the ``tiny`` model from ``models_dir``."""
    return create_app(Settings(models_dir=models_dir, default_model="tiny", **overrides))
