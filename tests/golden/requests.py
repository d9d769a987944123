"""A fixed set of 200 ``POST /tag`` bodies (hand-written vocabulary, a seeded mix), and a
recorder for their answers.

The answers in ``responses.json`` were first recorded from a server of the code before the
package move (``python -m tests.golden.requests URL``); ``test_golden_responses.py`` replays
the bodies and requires identical status codes and bodies. They are re-recorded only for a
change of behaviour that is meant (the commit that does it says which answers changed).
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Any

RESPONSES = Path(__file__).with_name("responses.json")
PEOPLE = ["Harry Potter", "Hermione Granger", "Angela Merkel", "John Smith", "Maria Lopez"]
PLACES = ["Paris", "London", "New York", "Berlin", "Tokyo", "Lagos"]
ORGS = ["Acme Corp", "the United Nations", "Reuters", "Deutsche Bank", "FC Barcelona"]
CITIES = ["boston", "denver", "pittsburgh", "atlanta", "dallas", "san francisco"]
DAYS = ["monday", "next friday", "tomorrow morning", "on november second", "tonight"]
NER_TEMPLATES = [
    "{person} met {other} in {place} on Monday.",
    "{org} said on Tuesday that {person} would visit {place}.",
    "Shares of {org} rose 3.5% in {place}, {person} told reporters.",
    "{person} ( {place} ) beat {other} 6-4 7-5.",
    "{place} 1996-08-30\n{person} arrived in {place} with {org}.",
    "{person} works for {org}. {other} lives in {place}!",
    '"We will win," said {person}, the coach of {org}.',
]
SLOT_TEMPLATES = [
    "show me flights from {city} to {other} {day}",
    "i'd like a first class ticket from {city} to {other}",
    "what's the cheapest fare from {city} to {other} {day}",
    "list american airlines flights arriving in {city} {day}",
]


def _fill(template: str, rng: random.Random) -> str:
    person, other = rng.sample(PEOPLE, 2)
    city, other_city = rng.sample(CITIES, 2)
    return template.format(
        person=person,
        other=other if "{other}" in template and "{person}" in template else other_city,
        place=rng.choice(PLACES),
        org=rng.choice(ORGS),
        city=city,
        day=rng.choice(DAYS),
    )


def golden_requests() -> list[dict[str, Any]]:
    """200 request bodies: texts, documents, batches, tokens, both models, and some errors."""
    rng = random.Random(20261201)
    bodies: list[dict[str, Any]] = []
    while len(bodies) < 200:
        kind = rng.randrange(10)
        if kind < 4:
            text = _fill(rng.choice(NER_TEMPLATES), rng)
            text = rng.choice([text, text, text.lower(), text.upper()])
            bodies.append({"text": text})
        elif kind < 6:
            body: dict[str, Any] = {"text": _fill(rng.choice(SLOT_TEMPLATES), rng)}
            body["model"] = "slots"
            bodies.append(body)
        elif kind == 6:
            count = rng.randint(2, 4)
            bodies.append({"texts": [_fill(rng.choice(NER_TEMPLATES), rng) for _ in range(count)]})
        elif kind == 7:
            words = _fill(rng.choice(NER_TEMPLATES[:3]), rng).replace(".", " .").split()
            bodies.append({"tokens": [words], "model": "ner"})
        elif kind == 8:
            bodies.append(rng.choice([{"text": ""}, {"text": "   \n "}, {"text": "Paris"}]))
        else:
            bodies.append(
                rng.choice(
                    [
                        {"text": "Paris", "model": "medical"},
                        {"text": 42},
                        {"texts": []},
                        {"tokens": [["two words"]]},
                        {},
                    ]
                )
            )
    return bodies


def record(url: str) -> None:
    """Send every body to ``url``/tag in order and write status and answer to responses.json."""
    import httpx

    answers = []
    with httpx.Client(base_url=url, timeout=60) as client:
        for body in golden_requests():
            response = client.post("/tag", json=body)
            answers.append(
                {"request": body, "status": response.status_code, "body": response.json()}
            )
    RESPONSES.write_text(json.dumps(answers, ensure_ascii=False, indent=0) + "\n", encoding="utf-8")


if __name__ == "__main__":
    record(sys.argv[1])
