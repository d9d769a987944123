"""A real ``tagserve serve`` process with the shipped models: documents, overload, SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tagserve.model.artifact_files import SHIPPED_MODELS_DIR, available
from tests.live_server import LiveServer, start_server
from tests.processes import child_pids, worker_pids
from tests.prometheus import sample_value
from tests.test_service_api import check_offsets

# Starts real processes (a tagserve serve or a tagserve command): see the slow marker.
pytestmark = pytest.mark.slow

SENTENCES = [
    "Angela Merkel met Emmanuel Macron in Berlin on Tuesday.",
    "Shares of Siemens rose 3.5 percent in Frankfurt.",
    "The U.N. Security Council will meet in New York.",
    "Roger Federer beat Rafael Nadal at Wimbledon.",
    "Toyota Motor Corp said sales in Japan fell.",
    "He flew from Paris to Tokyo with Air France.",
    "Barcelona signed the Brazilian striker Ronaldo.",
    "The European Commission fined Microsoft again.",
]
PARAGRAPHS = [" ".join(SENTENCES[i : i + 3]) for i in range(0, len(SENTENCES), 3)]


def rss_kib(pid: int) -> int:
    """Resident set size of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.fixture
def server(shipped_models_dir: Path, request: pytest.FixtureRequest) -> Iterator[LiveServer]:
    settings: dict[str, str] = getattr(request, "param", {})
    live = start_server(shipped_models_dir, **settings)
    yield live
    live.stop()


def batches_run(url: str) -> float:
    """The ner model's batch count, from /metrics."""
    metrics = httpx.get(f"{url}/metrics").text
    return sample_value(metrics, "tagserve_batch_sentences_count", model="ner")


def tag(url: str, payload: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(f"{url}/tag", json=payload, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def test_a_document_is_tagged_as_its_sentences_with_offsets_into_it(server: LiveServer) -> None:
    document = "\n\n".join(PARAGRAPHS)
    [result] = tag(server.url, {"text": document})["results"]
    check_offsets(document, result)
    alone = tag(server.url, {"texts": SENTENCES})["results"]
    expected_tokens, expected_entities = [], []
    position = 0
    for sentence, sentence_result in zip(SENTENCES, alone, strict=True):
        start = document.index(sentence, position)
        position = start + len(sentence)
        for key, out in (("tokens", expected_tokens), ("entities", expected_entities)):
            for item in sentence_result[key]:
                out.append({**item, "start": item["start"] + start, "end": item["end"] + start})
    assert result["tokens"] == expected_tokens
    assert result["entities"] == expected_entities
    found = {(e["label"], e["text"]) for e in result["entities"]}
    assert {("PER", "Angela Merkel"), ("LOC", "Berlin"), ("PER", "Rafael Nadal")} <= found


def test_a_document_near_the_size_limit_is_answered_in_order(server: LiveServer) -> None:
    paragraph = "\n\n".join(PARAGRAPHS)
    document = "\n\n".join([paragraph] * (80_000 // len(paragraph)))
    [result] = tag(server.url, {"text": document})["results"]
    assert len(document) > 75_000 and len(result["tokens"]) > 10_000
    check_offsets(document, result)
    assert sum(e["text"] == "Angela Merkel" for e in result["entities"]) == document.count(
        "Angela Merkel"
    )


async def burst(url: str, texts: list[str], requests: int, concurrency: int) -> list[Any]:
    """Fire ``requests`` single-sentence POSTs, ``concurrency`` at a time; bounded in time.
    The client keeps httpx's default connection limits and keep-alive expiry (5 s)."""
    semaphore = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:

        async def one(i: int) -> tuple[int, httpx.Response]:
            async with semaphore:
                return i, await client.post("/tag", json={"text": texts[i % len(texts)]})

        return await asyncio.wait_for(
            asyncio.gather(*(one(i) for i in range(requests))), timeout=240
        )


@pytest.mark.timeout(900)  # ten bursts: about 160 s on a quiet 2-core machine
@pytest.mark.parametrize(
    # No hold: the refusal path is under test, so refuse at once (TAGSERVE_OVERLOAD_HOLD_S=0).
    "server",
    [{"max_queue": "64", "max_batch_size": "16", "log_level": "error", "overload_hold_s": "0"}],
    indirect=True,
)
def test_a_burst_beyond_capacity_gets_only_right_answers_and_503s(server: LiveServer) -> None:
    """2,000 requests at concurrency 256, ten rounds in a row: only 200 (the solo answer) and
    503, never a dropped connection."""
    texts = [f"{sentence} ({i})" for i, sentence in enumerate(SENTENCES * 5)]
    solo = [tag(server.url, {"text": text})["results"][0] for text in texts]
    rss_before = rss_kib(server.process.pid)

    statuses: Counter[int] = Counter()
    for _ in range(10):
        answers = asyncio.run(burst(server.url, texts, requests=2000, concurrency=256))
        statuses.update(response.status_code for _, response in answers)
        for i, response in answers:
            if response.status_code == 200:
                assert response.json()["results"][0] == solo[i % len(texts)]
            else:
                assert response.status_code == 503, response.status_code
                assert response.headers["retry-after"] == "1"
                assert "TAGSERVE_MAX_QUEUE" in response.json()["detail"]
    assert statuses[503] > 0 and statuses[200] > 0, statuses
    growth_mib = (rss_kib(server.process.pid) - rss_before) / 1024
    assert growth_mib < 150, f"RSS grew by {growth_mib:.0f} MiB"
    assert httpx.get(f"{server.url}/health").status_code == 200
    assert tag(server.url, {"text": texts[0]})["results"][0] == solo[0]
    metrics = httpx.get(f"{server.url}/metrics").text
    rejected = sample_value(metrics, "tagserve_overload_rejections_total", model="ner")
    assert rejected == statuses[503]


@pytest.mark.parametrize(
    "server", [{"drain_notice_s": "1.5", "drain_timeout_s": "30"}], indirect=True
)
def test_sigterm_drains_in_flight_requests_and_exits_cleanly(server: LiveServer) -> None:
    heavy = {"texts": [" ".join(SENTENCES)] * 100}  # about 8,000 tokens a request
    answers: list[httpx.Response] = []

    def send() -> None:
        answers.append(httpx.post(f"{server.url}/tag", json=heavy, timeout=120))

    senders = [threading.Thread(target=send) for _ in range(3)]
    for sender in senders:
        sender.start()
    deadline = time.monotonic() + 60
    while batches_run(server.url) == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    children = child_pids(server.process.pid)
    shipped = len(available(SHIPPED_MODELS_DIR))
    assert len(worker_pids(server.process.pid)) == shipped, "one model worker per shipped model"
    server.process.send_signal(signal.SIGTERM)
    health = httpx.get(f"{server.url}/health", timeout=5)
    assert (health.status_code, health.json()) == (503, {"status": "draining"})
    assert len(answers) < 3, "the requests finished before the signal; make them heavier"
    # During the notice period new work is still served.
    assert len(tag(server.url, {"text": SENTENCES[0]})["results"]) == 1
    for sender in senders:
        sender.join(120)
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert all(len(a.json()["results"]) == 100 for a in answers)
    assert server.process.wait(60) == 0
    # The model workers (and multiprocessing's resource tracker) do not outlive the server.
    deadline = time.monotonic() + 5
    while [pid for pid in children if Path(f"/proc/{pid}").exists()]:
        assert time.monotonic() < deadline, [
            Path(f"/proc/{p}/cmdline").read_bytes() for p in children if Path(f"/proc/{p}").exists()
        ]
        time.sleep(0.05)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}/health")
