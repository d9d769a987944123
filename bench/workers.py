"""HTTP worker processes: throughput, latency, HTTP-process CPU per request, cold start and
memory for ``tagserve serve --workers N``, one server per N, in one run.

    python -m bench.workers [--workers 1,2,4] [--seconds 10] [--requests 200000]

For each N: start the server (``TAGSERVE_WORKERS=N``, ``ner`` only, TAGSERVE_TORCH_THREADS=1),
warm it up, then with wrk at c=64: single-sentence ``POST /tag`` (CoNLL-2003 test sentences,
detokenized, in turn) and ``GET /health``, each for --seconds. Prints req/s and p99 of /tag,
/health req/s, the CPU the HTTP processes spent per /tag and per /health request and their
ratio (model processes excluded: their CPU is the model's), sentences/s of 32-text requests
at c=16, cold start (process start to /health 200) and PSS of the whole process tree.
HTTP processes are told apart from model processes by the ``X-Tagserve-Worker`` header.
All traffic stays on 127.0.0.1; every run is bounded in time and requests.
"""

from __future__ import annotations

import argparse
import json
import os
import time

from bench.cold_start import memory_mb
from bench.detok import detokenize
from bench.server import (
    cpu_seconds,
    health_wrk,
    http_pids,
    process_tree,
    running_server,
    server_pid,
)
from bench.service_load import load_wrk
from tagserve.training.config import data_dir
from tagserve.training.readers import read_dataset


def measure(workers: int, single: list[dict], multi: list[dict], args: argparse.Namespace) -> dict:
    env = {"TAGSERVE_WORKERS": str(workers), "TAGSERVE_MODELS": "ner"}
    with running_server(env, timeout=120) as (url, cold_start):
        server = server_pid(url)
        http = http_pids(url, server, workers)
        load_wrk(url, single, 16, args.requests, 2)  # warm-up
        time.sleep(1)
        processes = process_tree(server)
        pss = sum(memory_mb(p, "Pss") for p in processes)

        before = sum(cpu_seconds(p) for p in http)
        tag = load_wrk(url, single, 64, args.requests, args.seconds)
        tag_cpu = (sum(cpu_seconds(p) for p in http) - before) / tag["requests"]
        health = health_wrk(url, args.seconds, http)
        bulk = load_wrk(url, multi, 16, args.requests, args.seconds)
    return {
        "workers": workers,
        "tag_rps": tag["rps"],
        "tag_p99_ms": tag["p99"],
        "errors": tag["errors"] + bulk["errors"],
        "health_rps": health["rps"],
        "tag_cpu_ms": 1000 * tag_cpu,
        "health_cpu_ms": 1000 * health["cpu"],
        "cpu_ratio": tag_cpu / health["cpu"],
        "sentences_per_s": bulk["rps"] * 32,
        "cold_start_s": cold_start,
        "pss_mb": pss,
        "processes": len(processes),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--requests", type=int, default=200_000, help="cap per wrk run")
    parser.add_argument("--json", default=None, help="also write the rows here")
    args = parser.parse_args()
    sentences = [e.tokens for e in read_dataset(data_dir(args.data_dir) / "conll2003/test.txt")]
    texts = [detokenize(s)[0] for s in sentences]
    single = [{"text": t} for t in texts]
    multi = [{"texts": texts[i : i + 32]} for i in range(0, len(texts) - 32, 32)]
    cores = len(os.sched_getaffinity(0))
    print(f"machine: {cores} cores ({os.uname().machine}); model: ner; wrk on the same machine")
    print(
        "| --workers | /tag req/s (c=64) | p99 ms | /health req/s | HTTP CPU ms per /tag | "
        "per /health | ratio | 32-text sentences/s | cold start s | PSS MB (processes) |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    rows = []
    for workers in (int(w) for w in args.workers.split(",")):
        r = measure(workers, single, multi, args)
        rows.append(r)
        print(
            f"| {workers} | {r['tag_rps']:.0f} | {r['tag_p99_ms']:.1f} | {r['health_rps']:.0f} | "
            f"{r['tag_cpu_ms']:.3f} | {r['health_cpu_ms']:.3f} | {r['cpu_ratio']:.2f} | "
            f"{r['sentences_per_s']:.0f} | {r['cold_start_s']:.1f} | "
            f"{r['pss_mb']:.0f} ({r['processes']}) |",
            flush=True,
        )
    if len(rows) > 1:
        base = rows[0]
        for r in rows[1:]:
            added = r["workers"] - base["workers"]
            print(
                f"--workers {r['workers']} vs {base['workers']}: /tag req/s "
                f"{r['tag_rps'] / base['tag_rps']:.2f}x, PSS per added worker "
                f"{(r['pss_mb'] - base['pss_mb']) / added:.0f} MB"
            )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=1)


if __name__ == "__main__":
    main()
