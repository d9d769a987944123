"""README agrees with what ships: its model table with the shipped model cards, and its
example answers with what the shipped models answer now (scripts/readme_examples.py)."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

from tagserve.model.artifact_files import SHIPPED_MODELS_DIR, available

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
# The scores a row of the model table states, by the card's test_metrics keys.
SHOWN = ("f1", "f1_lower", "f1_upper", "intent_accuracy", "frame_accuracy")


def _table_rows() -> dict[str, str]:
    """The first README table whose header starts with | model | task |, by model name."""
    section = README[README.index("| model | task |") :].split("\n\n", 1)[0]
    rows = {}
    for line in section.splitlines()[2:]:
        found = re.match(r"\| `([^`]+)` \|", line)
        assert found, line
        rows[found[1]] = line
    return rows


def test_the_model_table_states_every_shipped_models_scores() -> None:
    rows = _table_rows()
    assert sorted(rows) == available(SHIPPED_MODELS_DIR)
    for name, row in rows.items():
        card = json.loads((SHIPPED_MODELS_DIR / name / "metadata.json").read_text())
        figures = [card["test_metrics"][key] for key in SHOWN if key in card["test_metrics"]]
        stated = [float(x) for x in re.findall(r"\b\d+\.\d+\b", row.split("|")[-2])]
        assert stated == figures, f"README's row for {name} states {stated}, its card {figures}"


@pytest.mark.slow
def test_the_example_answers_are_what_the_models_answer() -> None:
    spec = importlib.util.spec_from_file_location(
        "readme_examples", ROOT / "scripts/readme_examples.py"
    )
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.render(README, script.blocks()) == README, (
        "README's example answers are stale: run python scripts/readme_examples.py"
    )
