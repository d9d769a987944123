"""README's example answers, made from live answers of the shipped models: the ``curl``
example of ``POST /tag`` and the printed output of the client example. Every figure and
answer in README comes from a script; this one rewrites the blocks between the
``<!-- readme_examples:NAME -->`` markers, or, with ``--check``, exits 1 naming the stale one.

    python scripts/readme_examples.py [--check]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
HARRY = "Harry Potter and Hermione Granger invented a new spell"
SLOTS_TEXTS = ["arrive Taipei on November 2nd", "fly from boston to denver next monday"]
_CUT = "__cut__"


def _answers() -> tuple[dict[str, Any], dict[str, Any]]:
    """The ner answer to HARRY and the slots answer to SLOTS_TEXTS, from the app itself."""
    from fastapi.testclient import TestClient

    from tagserve.service.api.app import create_app
    from tagserve.service.settings import Settings

    with TestClient(create_app(Settings(model_process=False))) as client:
        ner = client.post("/tag", json={"text": HARRY}).json()
        slots = client.post("/tag", json={"texts": SLOTS_TEXTS, "model": "slots"}).json()
    return ner, slots


def blocks() -> dict[str, str]:
    """Each generated block's text, by marker name."""
    ner, slots = _answers()
    shown = json.loads(json.dumps(ner))
    shown["results"][0]["tokens"] = [*shown["results"][0]["tokens"][:3], _CUT]
    answer = json.dumps(shown, indent=1, ensure_ascii=False).replace(f'"{_CUT}"', "…")
    tag = (
        "```console\n"
        "$ curl -s -X POST http://127.0.0.1:8000/tag -H 'content-type: application/json' \\\n"
        f'    -d \'{{"text": "{HARRY}"}}\'\n'
        f"{answer}\n"
        "```"
    )
    printed = "\n".join(
        str([(e["label"], e["text"]) for e in result["entities"]]) for result in slots["results"]
    )
    return {"tag": tag, "client": f"```text\n{printed}\n```"}


def _pattern(name: str) -> re.Pattern[str]:
    return re.compile(
        rf"(<!-- readme_examples:{name} -->\n)(.*?)(\n<!-- /readme_examples:{name} -->)", re.S
    )


def render(readme: str, generated: dict[str, str]) -> str:
    """README with each marked block replaced by its generated text."""
    for name, text in generated.items():
        readme, count = _pattern(name).subn(lambda m, t=text: m[1] + t + m[3], readme)
        if count != 1:
            raise SystemExit(f"README.md: expected one readme_examples:{name} block, found {count}")
    return readme


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if README is stale")
    args = parser.parse_args()
    readme = README.read_text(encoding="utf-8")
    updated = render(readme, blocks())
    if args.check:
        if updated != readme:
            sys.exit("README.md: an example answer is stale: run python scripts/readme_examples.py")
        return
    README.write_text(updated, encoding="utf-8")


if __name__ == "__main__":
    main()
