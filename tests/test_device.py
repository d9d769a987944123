"""``TAGSERVE_DEVICE`` and ``tagserve tag --device``: cuda without a GPU stops in one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from tagserve.service.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
NO_CUDA = f"cuda requested but no CUDA device is available (torch {torch.__version__})"
# The commands below run with no GPU visible, so they take the no-CUDA path on any machine.
WITHOUT_GPU = {**os.environ, "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": ""}


def test_the_default_device_is_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TAGSERVE_DEVICE", raising=False)
    assert Settings().device == "cpu"
    assert Settings(device="cpu").device == "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_cuda_without_a_gpu_is_one_clear_error() -> None:
    with pytest.raises(ValidationError) as raised:
        Settings(device="cuda")
    errors = raised.value.errors()
    assert len(errors) == 1
    assert errors[0]["loc"] == ("device",)
    assert errors[0]["msg"] == NO_CUDA


def test_an_unknown_device_is_refused() -> None:
    with pytest.raises(ValidationError) as raised:
        Settings(device="tpu")  # type: ignore[arg-type]
    assert raised.value.errors()[0]["loc"] == ("device",)


@pytest.mark.slow
def test_serve_with_cuda_and_no_gpu_exits_with_one_line(tiny_artifact: Path) -> None:
    env = {
        **WITHOUT_GPU,
        "TAGSERVE_DEVICE": "cuda",
        "TAGSERVE_MODELS_DIR": str(tiny_artifact.parent),
        "TAGSERVE_DEFAULT_MODEL": "tiny",
    }
    done = subprocess.run(
        [sys.executable, "-m", "tagserve", "serve", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"tagserve: error: setting TAGSERVE_DEVICE: {NO_CUDA}"
    ], done.stderr


@pytest.mark.slow
def test_tag_with_cuda_and_no_gpu_exits_with_one_line(tiny_artifact: Path) -> None:
    command = ["tag", "--model", str(tiny_artifact), "--device", "cuda"]
    done = subprocess.run(
        [sys.executable, "-m", "tagserve", *command],
        input="Harry Potter\n",
        env=WITHOUT_GPU,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [f"tagserve: error: --device: {NO_CUDA}"]
    assert done.stdout == ""


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("cache_words", [0, 100])
def test_a_predictor_on_cuda_tags_like_one_on_cpu(tiny_artifact: Path, cache_words: int) -> None:
    from tagserve.model.artifact import load
    from tagserve.model.predictor import Predictor

    sentences = [["Harry", "Potter", "went", "to", "London"], [], ["x"], ["a", "b", "c"]]
    on_cpu = Predictor(load(tiny_artifact, "cpu"), batch_size=2, cache_words=cache_words)
    on_cuda = Predictor(load(tiny_artifact, "cuda"), batch_size=2, cache_words=cache_words)
    assert on_cuda.device.type == "cuda"
    expected, tagged = on_cpu.predict(sentences), on_cuda.predict(sentences)
    assert [t.tags for t in tagged] == [t.tags for t in expected]
    for got, want in zip(tagged, expected, strict=True):
        assert got.scores == pytest.approx(want.scores, abs=1e-4)
