"""Cold start and memory: seconds from process start to /health 200, and the server's memory.

Memory is the server process plus its model worker processes (spawned, so they share only
file-backed pages such as torch's libraries with it): RSS summed over them counts shared
pages in each, PSS divides them among the processes.

python -m bench.cold_start [--runs 3]    (TAGSERVE_WORKERS=2 for two HTTP workers)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import httpx

from bench.server import process_tree, running_server, server_pid


def memory_mb(pid: int, field: str) -> float:
    """``Rss`` or ``Pss`` of a process in MB, from /proc/PID/smaps_rollup."""
    with open(f"/proc/{pid}/smaps_rollup") as rollup:
        for line in rollup:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def torch_loaded(pid: int) -> bool:
    """Whether the process has torch's library mapped (it has imported torch)."""
    with open(f"/proc/{pid}/maps") as maps:
        return "libtorch" in maps.read()


# What a cold start spends its time on, timed in a fresh interpreter.
_PARTS = """
import json, time
t0 = time.perf_counter(); import torch
t1 = time.perf_counter(); import fastapi, uvicorn, tagserve.service.api.app
t2 = time.perf_counter(); from tagserve.model.artifact import load, resolve
load(resolve("ner")); load(resolve("slots")); t3 = time.perf_counter()
print(json.dumps({"import torch": t1 - t0, "import fastapi, uvicorn and the app": t2 - t1,
                  "load both artifacts": t3 - t2}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores")
    for run in range(1, args.runs + 1):
        with running_server() as (url, seconds):
            models = httpx.get(f"{url}/models").json()["models"]
            for _ in range(50):
                httpx.post(
                    f"{url}/tag", json={"texts": ["Harry Potter visited the U.S. on Monday ."] * 32}
                )
            names = ", ".join(m["name"] for m in models)
            parent = server_pid(url)
            pids = process_tree(parent)
            rss = sum(memory_mb(p, "Rss") for p in pids)
            pss = sum(memory_mb(p, "Pss") for p in pids)
            torch_in = sum(torch_loaded(p) for p in pids)
            print(
                f"run {run}: cold start {seconds:.2f} s (models {names}); after 50 requests "
                f"{len(pids)} processes: RSS {rss:.0f} MB summed, PSS {pss:.0f} MB; "
                f"the tagserve serve process alone PSS {memory_mb(parent, 'Pss'):.0f} MB, "
                f"torch {'loaded' if torch_loaded(parent) else 'not loaded'} in it; "
                f"torch loaded in {torch_in} of {len(pids)} processes"
            )
    parts = json.loads(
        subprocess.run(
            [sys.executable, "-c", _PARTS], capture_output=True, text=True, check=True
        ).stdout
    )
    print("where the time goes: " + ", ".join(f"{k} {v:.2f} s" for k, v in parts.items()))


if __name__ == "__main__":
    main()
