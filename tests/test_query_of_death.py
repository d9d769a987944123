"""A query of death through the whole stack: two real tagserve replicas (the shipped ``ner``
model, TAGSERVE_BATCH_TIMEOUT_S=2, a hang injected from tests/hang_injection) behind real
nginx running deploy/nginx.conf (adapted for loopback as tests/test_nginx.py does).

One request that hangs the model, sent through nginx amid 50 good ones: every good one gets
200; the bad one fails exactly once, with 503, code ``model_timeout`` and no Retry-After, on
one replica only (nginx did not replay it on the other one, whose model it would hang too);
and ``tagserve.client.TagserveClient`` does not retry it either. Requests reaching the
replicas are counted from each replica's own /metrics (``tagserve_requests_total`` for
route /tag), read directly, not through nginx.

What the worker restarts honestly are: the replica that gets the query of death kills its
model worker once for the batch the bad request shared with good ones, and once more when
the batch's requests are retried one by one and the bad one hangs again alone: two restarts
(one if the bad request happened to be alone in its batch). The other replica restarts
nothing. The client's single bad request, alone in its batch, costs one more restart."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tagserve.client import TagserveClient, TagserveError
from tests.live_server import LiveServer, start_server
from tests.test_nginx import CONF, free_port, render, running_nginx

# Starts real processes (two tagserve serve, nginx): see the slow marker.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]

SENTENCE = "Angela Merkel met Emmanuel Macron in Berlin on Tuesday."
BAD = "Angela HANGME Merkel"
GOOD = 50
REPLICA = {
    "models": '["ner"]',
    "log_level": "error",
    "batch_timeout_s": "2",
    "test_hang_token": "HANGME",
}
RESTARTS = "tagserve_model_worker_restarts_total"
REQUESTS = "tagserve_requests_total"


def total(text: str, sample: str, **labels: str) -> float:
    """The sum of every sample ``sample`` whose labels include ``labels`` (0 when none)."""
    return sum(
        float(found.value)
        for family in text_string_to_metric_families(text)
        for found in family.samples
        if found.name == sample and labels.items() <= found.labels.items()
    )


def counts(replica: LiveServer) -> dict[str, float]:
    """A replica's own counters, read from it directly (not through nginx)."""
    text = httpx.get(f"{replica.url}/metrics", timeout=10).text
    return {
        "tag": total(text, REQUESTS, route="/tag"),
        "503": total(text, REQUESTS, route="/tag", status="503"),
        "restarts": total(text, RESTARTS, model="ner"),
    }


def delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {key: after[key] - before[key] for key in after}


@contextlib.contextmanager
def replicas(models_dir: Path, count: int) -> Iterator[list[LiveServer]]:
    """``count`` replicas started side by side (each waits, bounded, for /health = 200);
    every one that started is stopped on the way out, whatever happened."""
    with ThreadPoolExecutor(count) as pool:
        futures = [pool.submit(start_server, models_dir, 90.0, **REPLICA) for _ in range(count)]
    started: list[LiveServer] = []
    errors: list[BaseException] = []
    for future in futures:
        error = future.exception()
        if error is None:
            started.append(future.result())
        else:
            errors.append(error)
    try:
        if errors:
            raise errors[0]
        yield started
    finally:
        for replica in started:
            replica.stop()


def wait_healthy(replica: LiveServer, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{replica.url}/health", timeout=2).status_code == 200:
                return True
        time.sleep(0.1)
    return False


async def burst(url: str) -> tuple[list[httpx.Response], httpx.Response]:
    """50 good requests and one bad one, all at once, through nginx."""
    limits = httpx.Limits(max_connections=GOOD + 1)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
        good = [client.post("/tag", json={"text": f"{SENTENCE} ({i})"}) for i in range(GOOD)]
        bad = client.post("/tag", json={"text": BAD})
        half = GOOD // 2
        answers = await asyncio.wait_for(asyncio.gather(*good[:half], bad, *good[half:]), 45)
    answers = list(answers)
    return answers[:half] + answers[half + 1 :], answers[half]


def test_a_query_of_death_through_nginx_fails_once_on_one_replica(
    nginx: str, shipped_models_dir: Path, tmp_path: Path
) -> None:
    started = time.monotonic()
    with replicas(shipped_models_dir, 2) as (first, second):
        port = free_port()
        conf = render(
            CONF.read_text(),
            [int(r.url.rsplit(":", 1)[1]) for r in (first, second)],
            port,
            tmp_path,
        )
        url = f"http://127.0.0.1:{port}"
        with running_nginx(nginx, conf, tmp_path, port):
            before = [counts(r) for r in (first, second)]
            assert [b["tag"] for b in before] == [0, 0]
            assert [b["restarts"] for b in before] == [0, 0]

            # 1. The burst: 50 good, 1 bad, concurrently through nginx.
            good, bad = asyncio.run(burst(url))
            assert [a.status_code for a in good] == [200] * GOOD, [
                (a.status_code, a.text) for a in good if a.status_code != 200
            ]
            assert bad.status_code == 503, bad.text
            assert bad.json()["code"] == "model_timeout"
            assert "retry-after" not in bad.headers
            after = [counts(r) for r in (first, second)]
            burst_delta = [delta(a, b) for a, b in zip(after, before, strict=True)]
            # Every request reached exactly one replica: nothing was replayed.
            assert sum(d["tag"] for d in burst_delta) == GOOD + 1, burst_delta
            assert sorted(d["503"] for d in burst_delta) == [0, 1], burst_delta
            hit = 0 if burst_delta[0]["503"] == 1 else 1
            spared = 1 - hit
            assert 1 <= burst_delta[hit]["restarts"] <= 2, burst_delta
            assert burst_delta[spared]["restarts"] == 0, burst_delta
            assert sum(d["restarts"] for d in burst_delta) <= 2, burst_delta

            # 2. The same bad request through tagserve.client: one attempt, no retry. (First
            # the replaced worker is back, so that nothing else could answer 503.)
            for replica in (first, second):
                assert wait_healthy(replica, 30), f"{replica.url} did not come back"
            sleeps: list[float] = []
            client = TagserveClient(url, timeout=30, max_retries=3, sleep=sleeps.append)
            with client, pytest.raises(TagserveError) as raised:
                client.tag(text=BAD)
            assert raised.value.status == 503
            assert raised.value.code == "model_timeout"
            assert raised.value.retry_after is None
            assert sleeps == [], "the client waited to retry a model_timeout"
            final = [counts(r) for r in (first, second)]
            client_delta = [delta(f, a) for f, a in zip(final, after, strict=True)]
            assert sum(d["tag"] for d in client_delta) == 1, client_delta
            assert sorted(d["503"] for d in client_delta) == [0, 1], client_delta
            # Alone in its batch: one restart, on the replica that got it, none elsewhere.
            client_hit = 0 if client_delta[0]["503"] == 1 else 1
            assert client_delta[client_hit]["restarts"] == 1, client_delta
            assert client_delta[1 - client_hit]["restarts"] == 0, client_delta

            # 3. Both replicas still answer (through nginx and directly).
            with httpx.Client(base_url=url, timeout=30) as http:
                statuses = [http.post("/tag", json={"text": SENTENCE}).status_code for _ in "ab"]
            assert statuses == [200, 200]
            for replica in (first, second):
                direct = httpx.post(f"{replica.url}/tag", json={"text": SENTENCE}, timeout=30)
                assert direct.status_code == 200
            print(
                f"\nrestarts: burst {[d['restarts'] for d in burst_delta]}, "
                f"client {[d['restarts'] for d in client_delta]}, "
                f"total {[f['restarts'] for f in final]}; {time.monotonic() - started:.1f} s"
            )
