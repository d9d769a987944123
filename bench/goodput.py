"""Goodput under overload: sentences tagged per second at 16-512 connections, in one run.

    python -m bench.goodput [--seconds 8] [--levels 16,64,128,512]
        [--before TREE] [--nice0] [--data-dir DIR]

Starts ``tagserve serve --workers 2`` (TAGSERVE_MODELS=ner) on loopback for each server
variant: "after" (this tree), "after, nice 0" (this tree with TAGSERVE_HTTP_NICE=0, with
--nice0) and "before" (the tree at --before, e.g. a ``git worktree`` of the old commit, run
with PYTHONPATH set to it). All are up at once and measured interleaved: for 32-text
requests and for single-sentence requests (CoNLL-2003 test sentences, detokenized), at each
concurrency, each variant in turn. The load generator is wrk (C) with bench/goodput.lua,
one connection per thread, so each 200's latency is timed in Lua; it counts statuses (only
200 and 503 are allowed, and every 503 must carry Retry-After). Reported per run: 200s,
503s, sentences/s (200 answers x texts), p99 of the 200s, and the CPU seconds of the HTTP
workers, the model worker and wrk itself. Goodput ratio: sentences/s at the highest
concurrency / the best rate at any lower one. Every run is bounded by --seconds and a
response cap per connection; all traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector

from bench.detok import detokenize
from bench.server import cpu_seconds, free_port, http_pids, process_tree
from tagserve.training.config import data_dir
from tagserve.training.readers import read_dataset

LUA = Path(__file__).with_name("goodput.lua")
CAP_PER_CONNECTION = 100_000
# wrk runs at the lowest priority: on this machine it shares the cores with the server, and
# a client elsewhere would take none of them.
CLIENT_NICE = 19


@dataclass
class Variant:
    """One server under test: its tree, its environment and, once started, its processes."""

    label: str
    tree: Path
    env: dict[str, str]
    url: str = ""
    server: int = 0
    http: set[int] = field(default_factory=set)
    model: set[int] = field(default_factory=set)
    metrics_dir: str = ""


@contextlib.contextmanager
def serving(variant: Variant, timeout: float = 90.0) -> Iterator[None]:
    """``tagserve serve --workers 2`` from ``variant.tree`` until the block ends."""
    port = free_port()
    variant.metrics_dir = tempfile.mkdtemp(prefix="goodput-metrics-")
    env = {
        **os.environ,
        "PROMETHEUS_MULTIPROC_DIR": variant.metrics_dir,
        "PYTHONPATH": str(variant.tree),
        "TAGSERVE_LOG_LEVEL": "warning",
        "TAGSERVE_MODELS": "ner",
        **variant.env,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "tagserve", "serve", "--workers", "2", "--port", str(port)],
        cwd=variant.tree,
        env=env,
    )
    variant.url, variant.server = f"http://127.0.0.1:{port}", process.pid
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{variant.label}: no healthy server")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{variant.url}/health", timeout=1).status_code == 200:
                    break
            time.sleep(0.1)
        variant.http = http_pids(variant.url, process.pid, 2)
        others = set(process_tree(process.pid)) - variant.http - {process.pid}
        variant.model = others
        yield
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        shutil.rmtree(variant.metrics_dir, ignore_errors=True)


def drive(v: Variant, bodies_file: str, connections: int, seconds: float) -> dict:
    """One wrk run. wrk's JSON line gives the statuses and the 200s' p99 over the whole run;
    rates and CPU come from a window of ``seconds`` that opens once all ``connections`` are
    up (512 threads take seconds to start at nice 19): the 200s from the server's own
    counter files, the CPU from /proc."""
    command = ["nice", "-n", str(CLIENT_NICE), "wrk", f"-t{connections}", f"-c{connections}"]
    command += [f"-d{int(seconds) + 60}s", "--timeout", "30s", "-s", str(LUA), v.url, "--"]
    with subprocess.Popen(
        [*command, bodies_file, str(CAP_PER_CONNECTION)], stdout=subprocess.PIPE, text=True
    ) as wrk:
        port = int(v.url.rsplit(":", 1)[1])
        deadline = time.monotonic() + 60
        while established(port) < connections and time.monotonic() < deadline:
            time.sleep(0.1)
        pids = [*v.http, *v.model, wrk.pid]
        cpu0, ok0, t0 = [cpu_seconds(p) for p in pids], answered(v), time.monotonic()
        time.sleep(seconds)
        cpu1, ok1, t1 = [cpu_seconds(p) for p in pids], answered(v), time.monotonic()
        wrk.send_signal(signal.SIGINT)  # wrk stops and prints its summary
        out, _ = wrk.communicate(timeout=60)
    result = json.loads(out.strip().splitlines()[-1])
    used = dict(zip(pids, (b - a for a, b in zip(cpu0, cpu1, strict=True)), strict=True))
    result["window_ok"], result["seconds"] = ok1 - ok0, t1 - t0
    result["http_cpu"] = sum(used[p] for p in v.http)
    result["model_cpu"] = sum(used[p] for p in v.model)
    result["wrk_cpu"] = used[wrk.pid]
    return result


def established(port: int) -> int:
    """Client-side TCP connections to ``port`` on loopback that are established."""
    lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return sum(
        1 for line in lines if line.split()[2].endswith(f":{port:04X}") and line.split()[3] == "01"
    )


def answered(v: Variant) -> float:
    """``POST /tag`` 200s so far, read from the server's metric files (no request sent)."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=v.metrics_dir)
    return sum(
        sample.value
        for metric in registry.collect()
        if metric.name == "tagserve_requests"
        for sample in metric.samples
        if sample.name.endswith("_total")
        and sample.labels.get("route") == "/tag"
        and sample.labels.get("status") == "200"
    )


def measure(variant: Variant, bodies_file: str, texts: int, conns: int, seconds: float) -> dict:
    """Drive one variant; sentences/s over the window; then let its queue drain."""
    r = drive(variant, bodies_file, conns, seconds)
    r["sentences_s"] = r["window_ok"] * texts / r["seconds"]
    settle(variant)
    return r


def settle(variant: Variant, limit_s: float = 30.0) -> None:
    """Wait (bounded) until the model worker is idle: work queued by one run must not be
    done on the next one's clock."""
    deadline = time.monotonic() + limit_s
    last = sum(cpu_seconds(p) for p in variant.model)
    while time.monotonic() < deadline:
        time.sleep(0.3)
        now = sum(cpu_seconds(p) for p in variant.model)
        if now - last < 0.01:
            return
        last = now


def nice_of(pid: int) -> int:
    """A process's nice value (from /proc: field 19 of stat)."""
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


def bodies(data: Path) -> dict[str, tuple[list[dict], int]]:
    """The two request kinds: 32 texts per request, and one sentence per request."""
    sentences = [e.tokens for e in read_dataset(data / "conll2003/test.txt")]
    texts = [detokenize(s)[0] for s in sentences]
    multi = [{"texts": texts[i : i + 32]} for i in range(0, len(texts) - 32, 32)]
    return {"32 texts": (multi, 32), "1 sentence": ([{"text": t} for t in texts[:1000]], 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--seconds", type=float, default=8.0, help="time limit per run")
    parser.add_argument("--levels", default="16,64,128,512")
    parser.add_argument("--before", type=Path, default=None, help="tree of the old code")
    parser.add_argument("--nice0", action="store_true", help="also this tree with nice 0")
    args = parser.parse_args()
    here = Path(__file__).resolve().parents[1]
    variants = [Variant("after", here, {})]
    if args.nice0:
        variants.append(Variant("after, nice 0", here, {"TAGSERVE_HTTP_NICE": "0"}))
    if args.before is not None:
        variants.insert(0, Variant("before", args.before.resolve(), {}))
    levels = [int(c) for c in args.levels.split(",")]
    kinds = bodies(data_dir(args.data_dir))
    with contextlib.ExitStack() as stack:
        files = {}
        for kind, (items, _) in kinds.items():
            handle = stack.enter_context(tempfile.NamedTemporaryFile("w", suffix=".jsonl"))
            handle.writelines(json.dumps(body) + "\n" for body in items)
            handle.flush()
            files[kind] = handle.name
        for variant in variants:
            stack.enter_context(serving(variant))
        cpu = Path("/proc/cpuinfo").read_text()
        model_name = next(line for line in cpu.splitlines() if line.startswith("model name"))
        print(
            f"machine: {os.cpu_count()} cores ({model_name.split(':', 1)[1].strip()}); "
            f"server: tagserve serve --workers 2, TAGSERVE_MODELS=ner; client: wrk, one "
            f"connection per thread, nice {CLIENT_NICE}, on the same machine; "
            f"{args.seconds:.0f} s per run"
        )
        for v in variants:
            nices = [nice_of(p) for p in sorted(v.http)], [nice_of(p) for p in sorted(v.model)]
            print(f"{v.label}: nice of HTTP workers {nices[0]}, of model worker {nices[1]}")
        for file in files.values():
            for v in variants:  # warm-up: caches, connections, the model's first batches
                drive(v, file, 16, 2)
                settle(v)
        rates: dict[tuple[str, str, int], float] = {}
        for kind, file in files.items():
            texts = kinds[kind][1]
            print(f"\n{kind} per request\n")
            print(
                "| server | conns | 200 | 503 | other | 503 w/o Retry-After | sentences/s "
                "| p99 of 200s (ms) | HTTP CPU-s | model CPU-s | wrk CPU-s |"
            )
            print("|---|---|---|---|---|---|---|---|---|---|---|")
            for conns in levels:
                for v in variants:
                    r = measure(v, file, texts, conns, args.seconds)
                    rates[(kind, v.label, conns)] = r["sentences_s"]
                    print(
                        f"| {v.label} | {conns} | {r['ok']} | {r['busy']} | "
                        f"{r['other'] + r['socket_errors']} | {r['no_retry_after']} | "
                        f"{r['sentences_s']:.0f} | {r['p99_ok_ms']:.0f} | {r['http_cpu']:.1f} "
                        f"| {r['model_cpu']:.1f} | {r['wrk_cpu']:.1f} |",
                        flush=True,
                    )
        print()
        top, lower = levels[-1], levels[:-1]
        for kind in kinds:
            for v in variants:
                best = max(rates[(kind, v.label, c)] for c in lower)
                ratio = rates[(kind, v.label, top)] / max(best, 1e-9)
                verdict = "met" if ratio >= 0.80 else "MISSED"
                print(
                    f"goodput {kind}, {v.label}: {rates[(kind, v.label, top)]:.0f} / "
                    f"{best:.0f} = {ratio:.2f} (target 0.80: {verdict})"
                )


if __name__ == "__main__":
    main()
