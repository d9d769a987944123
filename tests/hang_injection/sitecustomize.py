"""Injects a hanging model from outside the code under test: any Python process started with
this folder on ``PYTHONPATH`` and ``TAGSERVE_TEST_HANG_TOKEN`` set (a spawned model worker
inherits both) patches ``Predictor.predict`` as the module loads, so a batch holding the
token sleeps as a model that hangs would. Production code has no hook for it."""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import sys
import time
from typing import Any

TOKEN = os.environ.get("TAGSERVE_TEST_HANG_TOKEN")


class _PatchPredictor(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name != "tagserve.model.predictor":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.loader is not None
        original = spec.loader.exec_module

        def exec_module(module: Any) -> None:
            original(module)
            predict = module.Predictor.predict

            def hanging(self: Any, sentences: list[list[str]]) -> Any:
                if any(TOKEN in sentence for sentence in sentences):
                    time.sleep(3600)
                return predict(self, sentences)

            module.Predictor.predict = hanging

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


if TOKEN:
    sys.meta_path.insert(0, _PatchPredictor())
