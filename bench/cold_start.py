"""Cold start and memory: seconds from process start to /health 200, and the server's RSS.

python -m bench.cold_start [--runs 3]
"""

from __future__ import annotations

import argparse
import os

import httpx

from bench.server import running_server


def rss_mb(pid: int) -> float:
    """Resident set size of a process in MB, from /proc."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


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
            print(
                f"run {run}: cold start {seconds:.2f} s (models {names}); "
                f"server RSS after 50 requests {server_rss(url):.0f} MB"
            )


def server_rss(url: str) -> float:
    """RSS of the process listening behind ``url``, found through /proc."""
    port = url.rsplit(":", 1)[1]
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                command = handle.read().split(b"\0")
        except OSError:
            continue
        if b"serve" in command and port.encode() in command:
            return rss_mb(int(pid))
    return float("nan")


if __name__ == "__main__":
    main()
