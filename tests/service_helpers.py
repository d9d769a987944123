"""Building apps over the tiny random-weight model for service tests."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from tagserve.model.tagged import TaggedSentence
from tagserve.service.api.app import create_app
from tagserve.service.settings import Settings


def tiny_app(models_dir: Path, **overrides: Any) -> FastAPI:
    """An app serving the ``tiny`` model from ``models_dir``."""
    return create_app(Settings(models_dir=models_dir, default_model="tiny", **overrides))


@asynccontextmanager
async def held_app(
    models_dir: Path,
    gate: threading.Event,
    headers: dict[str, str] | None = None,
    **overrides: Any,
) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    """The tiny app whose model waits for ``gate`` before tagging (so requests pile up in
    front of it), and a client for it."""
    app = tiny_app(models_dir, **overrides)
    async with app.router.lifespan_context(app):
        batcher = app.state.models["tiny"].batcher
        real_tagger = batcher._tagger

        class HeldTagger:
            async def predict_async(self, sentences: list[list[str]]) -> list[TaggedSentence]:
                await asyncio.to_thread(gate.wait, 5)
                return await real_tagger.predict_async(sentences)

        batcher._tagger = HeldTagger()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://test", headers=headers
        ) as client:
            yield app, client
