"""Service throughput and latency under a bounded load, batching on vs off, in one run.

    python -m bench.service_load [--requests 100000] [--concurrency 1,16,64] [--seconds 15]
        [--client wrk|httpx] [--max-batch-size 32] [--max-wait-ms MS] [--workers N]

Starts `tagserve serve` on a free loopback port twice (batching on: TAGSERVE_MAX_BATCH_SIZE
32; off: 1), sends single-sentence POST /tag requests (CoNLL-2003 test sentences,
detokenized, in turn) at each concurrency with wrk (or an async httpx client), and prints
requests/s, p50/p95/p99 latency and errors, then the ratio of batching on to off. Also a run
of 32-text requests (sentences/s), and (with wrk) the CPU the HTTP processes spend per
``POST /tag`` against per ``GET /health`` at c=64, model processes excluded. Every run is
bounded in time (--seconds) and in requests (--requests, a safety cap: wrk's rate is only
right when the cap is not reached, which the script checks); all traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

from bench.detok import detokenize
from bench.server import (
    cpu_seconds,
    health_wrk,
    http_pids,
    process_tree,
    running_server,
    server_pid,
)
from tagserve.training.config import data_dir
from tagserve.training.readers import read_dataset


async def load(url: str, bodies: list[dict], concurrency: int, count: int, seconds: float) -> dict:
    """Send up to ``count`` requests with ``concurrency`` workers for at most ``seconds``."""
    latencies: list[float] = []
    errors = 0
    next_index = 0
    deadline = time.perf_counter() + seconds
    # Idle connections expire on the client well before uvicorn closes them (5 s): reusing one
    # the server is closing at that moment would be a client-side race, not a server failure.
    limits = httpx.Limits(
        max_connections=concurrency, max_keepalive_connections=concurrency, keepalive_expiry=1.0
    )
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:

        async def worker() -> None:
            nonlocal next_index, errors
            while next_index < count and time.perf_counter() < deadline:
                body = bodies[next_index % len(bodies)]
                next_index += 1
                started = time.perf_counter()
                try:
                    response = await client.post("/tag", json=body)
                    ok = response.status_code == 200
                except httpx.HTTPError:
                    ok = False
                latencies.append(time.perf_counter() - started)
                errors += not ok

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    quantiles = (
        statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [latencies[0]] * 99
    )
    return {
        "requests": len(latencies),
        "rps": len(latencies) / elapsed,
        "p50": 1000 * quantiles[49],
        "p95": 1000 * quantiles[94],
        "p99": 1000 * quantiles[98],
        "errors": errors,
    }


def load_wrk(url: str, bodies: list[dict], concurrency: int, count: int, seconds: float) -> dict:
    """The same measurement with wrk (C, two threads): a lighter client than Python's."""
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as handle:
        handle.writelines(json.dumps(body) + "\n" for body in bodies)
    threads = min(2, concurrency)
    command = [
        "wrk",
        f"-t{threads}",
        f"-c{concurrency}",
        f"-d{int(seconds)}s",
        "--timeout",
        "30s",
        "-s",
        str(Path(__file__).with_name("wrk_post.lua")),
        url,
        "--",
        handle.name,
        str(max(count // threads, 1)),
    ]
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=True)
    finally:
        os.unlink(handle.name)
    r = json.loads(done.stdout.strip().splitlines()[-1])
    if r["requests"] >= count - threads:
        # wrk divides by its full -d duration even when threads stopped early at the cap.
        raise SystemExit(f"the request cap ({count}) was reached: raise --requests")
    return {
        "requests": r["requests"],
        "rps": r["requests"] / r["seconds"],
        "p50": r["p50"],
        "p95": r["p95"],
        "p99": r["p99"],
        "errors": r["non_2xx"] + r["socket_errors"],
    }


def _load_httpx(url: str, bodies: list[dict], concurrency: int, count: int, seconds: float) -> dict:
    return asyncio.run(load(url, bodies, concurrency, count, seconds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--requests", type=int, default=100_000, help="cap per run")
    parser.add_argument("--concurrency", default="1,16,64")
    parser.add_argument("--seconds", type=float, default=15.0, help="time limit per run")
    parser.add_argument(
        "--client",
        choices=["wrk", "httpx"],
        default="wrk" if shutil.which("wrk") else "httpx",
        help="load generator (default: wrk when installed)",
    )
    parser.add_argument(
        "--max-batch-size", type=int, default=32, help="TAGSERVE_MAX_BATCH_SIZE when batching is on"
    )
    parser.add_argument(
        "--max-wait-ms",
        default=None,
        help="TAGSERVE_MAX_WAIT_MS for both runs (default: the service's)",
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="TAGSERVE_WORKERS: HTTP worker processes"
    )
    args = parser.parse_args()
    extra_env = {"TAGSERVE_MAX_WAIT_MS": args.max_wait_ms} if args.max_wait_ms else {}
    extra_env["TAGSERVE_WORKERS"] = str(args.workers)
    measure = load_wrk if args.client == "wrk" else _load_httpx
    sentences = [e.tokens for e in read_dataset(data_dir(args.data_dir) / "conll2003/test.txt")]
    texts = [detokenize(s)[0] for s in sentences]
    single = [{"text": t} for t in texts]
    multi = [{"texts": texts[i : i + 32]} for i in range(0, len(texts) - 32, 32)]
    levels = [int(c) for c in args.concurrency.split(",")]
    print(
        f"machine: {os.cpu_count()} cores; server: --workers {args.workers}, "
        "TAGSERVE_TORCH_THREADS=1; "
        f"client: {args.client} on the same machine; "
        f"TAGSERVE_MAX_WAIT_MS={args.max_wait_ms or 'default'}; "
        f"batching on = TAGSERVE_MAX_BATCH_SIZE={args.max_batch_size}, off = 1"
    )
    print(
        f"{'batching':>9} {'conc':>5} {'requests':>9} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} "
        f"{'p99 ms':>8} {'errors':>7}   (CPU: share of one core during the run)"
    )
    rps: dict[tuple[str, int], float] = {}
    for label, batch in (("on", str(args.max_batch_size)), ("off", "1")):
        with running_server({"TAGSERVE_MAX_BATCH_SIZE": batch, **extra_env}) as (url, cold_start):
            asyncio.run(load(url, single, 8, 200, 10))  # warm-up
            pids = process_tree(server_pid(url))
            http = http_pids(url, server_pid(url), args.workers)
            for concurrency in levels:
                cpu_before = [cpu_seconds(p) for p in pids]
                r = measure(url, single, concurrency, args.requests, args.seconds)
                if concurrency == 64:
                    tag_cpu = sum(
                        cpu_seconds(p) - b
                        for p, b in zip(pids, cpu_before, strict=True)
                        if p in http
                    ) / max(r["requests"], 1)
                busy = [
                    100 * (cpu_seconds(p) - before) / args.seconds
                    for p, before in zip(pids, cpu_before, strict=True)
                ]
                http_busy = sum(b for p, b in zip(pids, busy, strict=True) if p in http)
                model_busy = [b for p, b in zip(pids, busy, strict=True) if p not in http]
                rps[(label, concurrency)] = r["rps"]
                print(
                    f"{label:>9} {concurrency:>5} {r['requests']:>9} {r['rps']:>8.0f} "
                    f"{r['p50']:>8.1f} {r['p95']:>8.1f} {r['p99']:>8.1f} {r['errors']:>7}   "
                    f"CPU: HTTP {http_busy:.0f}%, other processes "
                    f"{' + '.join(f'{b:.0f}%' for b in model_busy) or 'none'}"
                )
            if label == "on" and args.client == "wrk":
                health = health_wrk(url, args.seconds, http)
                health_cpu = health["cpu"]
                print(f"framework baseline, GET /health at c=64: {health['rps']:.0f} req/s")
                if 64 in levels:
                    print(
                        f"HTTP-process CPU at c=64: {1000 * tag_cpu:.3f} ms per POST /tag, "
                        f"{1000 * health_cpu:.3f} ms per GET /health, "
                        f"ratio {tag_cpu / health_cpu:.2f}"
                    )
            if label == "on":
                r = measure(url, multi, 16, args.requests, args.seconds)
                print(
                    f"32-text requests, concurrency 16: {r['rps'] * 32:.0f} sentences/s "
                    f"({r['rps']:.1f} req/s, p99 {r['p99']:.0f} ms, errors {r['errors']})"
                )
                print(f"cold start (process start to /health 200): {cold_start:.2f} s")
    for concurrency in levels:
        print(
            f"batching on/off at concurrency {concurrency}: "
            f"{rps[('on', concurrency)] / rps[('off', concurrency)]:.2f}x"
        )


if __name__ == "__main__":
    main()
