"""A missing or corrupt model stops start-up with one clear line; never a half-ready server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tagserve.model.artifact import ArtifactError
from tests.processes import pids_with_environment
from tests.service_helpers import tiny_app

# Starts real processes (a tagserve serve or a tagserve command): see the slow marker.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent


def truncate_weights(directory: Path) -> str:
    weights = directory / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:500])
    return f"{weights}: cannot read weights"


def unknown_labels(directory: Path) -> str:
    (directory / "labels.json").write_text(
        json.dumps({"scheme": "BIOES", "labels": ["O", "B-PER", "Z-PER"]})
    )
    return f"{directory / 'labels.json'}: invalid label set: malformed tag 'Z-PER'"


def missing_config(directory: Path) -> str:
    (directory / "vocab.json").unlink()
    return f"{directory / 'vocab.json'}: file is missing"


def _edit_json(path: Path, **changes: object) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def unknown_tokenizer(directory: Path) -> str:
    _edit_json(directory / "metadata.json", tokenizer={"style": "spacy", "lowercase": False})
    return f"{directory / 'metadata.json'}: tokenizer.style: Input should be 'conll' or 'atis'"


def bare_string_tokenizer(directory: Path) -> str:
    _edit_json(directory / "metadata.json", tokenizer="spacy")
    return f"{directory / 'metadata.json'}: tokenizer: Input should be a valid dictionary"


def missing_labels(directory: Path) -> str:
    (directory / "labels.json").unlink()
    return f"{directory / 'labels.json'}: file is missing"


def mismatched_dimensions(directory: Path) -> str:
    _edit_json(directory / "config.json", hidden_size=24)
    return f"{directory / 'weights.safetensors'}: weights do not match config.json"


CORRUPTIONS = [
    truncate_weights,
    unknown_labels,
    missing_config,
    unknown_tokenizer,
    bare_string_tokenizer,
    missing_labels,
    mismatched_dimensions,
]


@pytest.mark.parametrize("corrupt", CORRUPTIONS)
def test_lifespan_refuses_a_corrupt_model(tiny_artifact: Path, corrupt) -> None:  # type: ignore[no-untyped-def]
    expected = corrupt(tiny_artifact)
    with pytest.raises(ArtifactError) as raised, TestClient(tiny_app(tiny_artifact.parent)):
        pass
    assert str(raised.value).startswith(f"model artifact {expected}")


@pytest.mark.parametrize("corrupt", [*CORRUPTIONS, None])
def test_serve_exits_with_one_line(tiny_artifact: Path, corrupt) -> None:  # type: ignore[no-untyped-def]
    if corrupt is None:
        models_dir = tiny_artifact.parent / "absent"
        expected = (
            "tagserve: error: setting TAGSERVE_MODELS_DIR: Value error, "
            f"models_dir {models_dir} is not a directory"
        )
    else:
        models_dir = tiny_artifact.parent
        expected = f"tagserve: error: model artifact {corrupt(tiny_artifact)}"
    mark = f"TAGSERVE_TEST_MARK={uuid.uuid4()}"
    env = {**os.environ, "TAGSERVE_MODELS_DIR": str(models_dir), "TAGSERVE_DEFAULT_MODEL": "tiny",
           "PYTHONPATH": str(ROOT), "TAGSERVE_TEST_MARK": mark.partition("=")[2]}  # fmt: skip
    assert failed_serve_line(env).startswith(expected)
    assert pids_with_environment(mark) == [], "a process of the failed server is still running"


def failed_serve_line(env: dict[str, str]) -> str:
    """``tagserve serve`` with ``env``: it must exit 1 with one line and no traceback."""
    done = subprocess.run(
        [sys.executable, "-m", "tagserve", "serve", "--port", "0"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    return lines[0]


def test_serve_rejects_a_bad_port_before_loading_anything() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tagserve", "serve", "--port", "99999"],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "argument --port: expected a port number 0-65535, got '99999'" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("TAGSERVE_MODELS", "tiny, other", ["tiny", "other"]),
        ("TAGSERVE_MODELS", '["tiny", "other"]', ["tiny", "other"]),
        ("TAGSERVE_MODELS", "tiny", ["tiny"]),
        ("TAGSERVE_CORS_ORIGINS", "https://a.example,https://b.example",
         ["https://a.example", "https://b.example"]),
        ("TAGSERVE_API_KEYS", "k1,k2", ["k1", "k2"]),
    ],
)  # fmt: skip
def test_list_settings_take_commas_or_json(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: list[str]
) -> None:
    """What people type into an environment variable (``a,b``) works, not only JSON."""
    from tagserve.service.settings import Settings

    monkeypatch.setenv(variable, value)
    settings = Settings()
    assert getattr(settings, variable.removeprefix("TAGSERVE_").lower()) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("tiny,", "setting TAGSERVE_MODELS: an empty entry in the list"),
        ('["tiny"', "setting TAGSERVE_MODELS: not a JSON list"),
    ],
)
def test_a_bad_list_setting_is_one_line(value: str, message: str) -> None:
    env = {**os.environ, "TAGSERVE_MODELS": value, "PYTHONPATH": str(ROOT)}
    assert failed_serve_line(env).startswith(f"tagserve: error: {message}")
