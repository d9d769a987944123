"""CPU the HTTP process spends per request inside the app, without sockets: ``POST /tag``
against ``GET /health``, in one run.

    python -m bench.request_path [--model ner] [--requests 6000] [--concurrency 64] [--profile]

The app is built as ``tagserve serve`` builds it (the model in a worker process of its own)
and driven through ASGI directly by ``--concurrency`` concurrent callers, so the figure is
the app's own Python work (middleware, routing, parsing, tokenizing, batching, the model
round trip as seen from this side, building the response), free of the HTTP parser, the
kernel and the load generator that ``bench.service_load`` measures with them. The bodies are
CoNLL-2003 test sentences, detokenized. ``--profile`` prints the top functions of /tag.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import time
from typing import Any

import orjson

from bench.detok import detokenize
from tagserve.service.api.app import create_app
from tagserve.service.inference.registry import serve_remote, start_owners
from tagserve.service.metrics import Metrics
from tagserve.service.settings import Settings
from tagserve.training.config import data_dir
from tagserve.training.readers import read_dataset


def request_scope(method: str, path: str, body: bytes) -> dict[str, Any]:
    """The ASGI scope uvicorn would pass for this request."""
    headers = [(b"host", b"127.0.0.1"), (b"content-length", str(len(body)).encode())]
    if body:
        headers.append((b"content-type", b"application/json"))
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "headers": headers, "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
    }  # fmt: skip


async def call(app: Any, method: str, path: str, body: bytes = b"") -> int:
    """One request through the app; returns the status."""
    status = 0
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(request_scope(method, path, body), receive, send)
    return status


async def drive(app: Any, requests: list[tuple[str, str, bytes]], concurrency: int) -> float:
    """Run ``requests`` with ``concurrency`` callers; returns this process's CPU seconds."""
    queue = list(reversed(requests))

    async def caller() -> None:
        while queue:
            method, path, body = queue.pop()
            status = await call(app, method, path, body)
            if status != 200:
                raise RuntimeError(f"{method} {path}: status {status}")

    started = time.process_time()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    return time.process_time() - started


async def main_async(args: argparse.Namespace) -> None:
    settings = Settings(models=[args.model], default_model=args.model, log_level="warning")
    metrics = Metrics()
    owners = start_owners(settings, metrics, [args.model])
    models = serve_remote(settings, metrics, {n: o.address for n, o in owners.items()})
    app = create_app(settings, models, metrics)
    sentences = read_dataset(data_dir(args.data_dir) / "conll2003/test.txt")
    bodies = [orjson.dumps({"text": detokenize(s.tokens)[0]}) for s in sentences]
    tag = [("POST", "/tag", bodies[i % len(bodies)]) for i in range(args.requests)]
    health = [("GET", "/health", b"")] * args.requests
    async with app.router.lifespan_context(app):
        await drive(app, tag[:500] + health[:500], args.concurrency)  # warm-up
        figures: dict[str, list[float]] = {"tag": [], "health": []}
        for _ in range(args.rounds):
            for name, batch in (("tag", tag), ("health", health)):
                seconds = await drive(app, batch, args.concurrency)
                figures[name].append(seconds / len(batch) * 1e6)
        if args.profile:
            profiler = cProfile.Profile()
            profiler.enable()
            await drive(app, tag, args.concurrency)
            profiler.disable()
            pstats.Stats(profiler).sort_stats(args.sort).print_stats(args.top)
    for owner in owners.values():
        owner.close()
    tag_us, health_us = min(figures["tag"]), min(figures["health"])
    print(f"model: {args.model}; {args.requests} requests a round, concurrency {args.concurrency}")
    for name, label in (("tag", "POST /tag"), ("health", "GET /health")):
        rounds = ", ".join(f"{v:.0f}" for v in figures[name])
        print(f"CPU us per {label} (each round): {rounds}")
    ratio = tag_us / health_us
    print(f"best rounds: /tag {tag_us:.0f} us, /health {health_us:.0f} us, ratio {ratio:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="ner")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--requests", type=int, default=6000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--sort", default="tottime", help="pstats order for --profile")
    parser.add_argument("--top", type=int, default=25, help="functions --profile prints")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
