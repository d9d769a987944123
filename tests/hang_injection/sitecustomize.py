"""Injects hangs from outside the code under test: any Python process started with this
folder on ``PYTHONPATH`` (spawned workers inherit it) patches, as the module loads,
``Predictor.predict`` when ``TAGSERVE_TEST_HANG_TOKEN`` is set (a batch holding the token
sleeps, as a model that hangs would) and the ``POST /tag`` work when
``TAGSERVE_TEST_LOOP_HANG_TOKEN`` is set (a request holding it blocks its HTTP worker's event
loop). Production code has no hook for either."""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import sys
import time
from typing import Any

TOKEN = os.environ.get("TAGSERVE_TEST_HANG_TOKEN")
LOOP_TOKEN = os.environ.get("TAGSERVE_TEST_LOOP_HANG_TOKEN")


def _hang_model(module: Any) -> None:
    predict = module.Predictor.predict

    def hanging(self: Any, sentences: list[list[str]]) -> Any:
        if any(TOKEN in sentence for sentence in sentences):
            time.sleep(3600)
        return predict(self, sentences)

    module.Predictor.predict = hanging


def _hang_loop(module: Any) -> None:
    payload = module.tag_payload

    async def blocking(body: Any, *args: Any) -> Any:
        if LOOP_TOKEN in (body.text or ""):
            time.sleep(3600)  # on the event loop: nothing else runs in this worker
        return await payload(body, *args)

    module.tag_payload = blocking


PATCHES = {
    **({"tagserve.model.predictor": _hang_model} if TOKEN else {}),
    **({"tagserve.service.api.tagging": _hang_loop} if LOOP_TOKEN else {}),
}


class _Patch(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        patch = PATCHES.pop(name, None)
        if patch is None:
            return None
        if not PATCHES:
            sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.loader is not None
        original = spec.loader.exec_module

        def exec_module(module: Any) -> None:
            original(module)
            patch(module)

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


if PATCHES:
    sys.meta_path.insert(0, _Patch())
