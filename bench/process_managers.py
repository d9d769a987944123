"""Process managers for N HTTP workers, measured on one tiny ASGI app: ``uvicorn --workers``,
gunicorn with uvicorn workers, and tagserve's own supervisor.

    python -m bench.process_managers [--hang-timeout 10] [--window 40] [--only tagserve,...]

Run from the repository root. All three serve the same app (written to a temp folder:
``GET /`` answers the worker's pid, ``GET /hang`` blocks the worker's event loop with
``time.sleep(3600)``) with 2 workers on 127.0.0.1, uvloop and httptools, keep-alive 75 s:

* uvicorn: ``python -m uvicorn tinyapp:app --workers 2`` from this virtualenv;
* gunicorn: ``gunicorn -k uvicorn_worker.UvicornWorker -w 2 --timeout T``, installed into a
  throwaway virtualenv under /tmp (never into the project's), with the same uvicorn, uvloop
  and httptools versions as this one;
* tagserve: :class:`tagserve.service.runtime.supervisor.Supervisor` itself (its run loop,
  heartbeat check, backoff and ``_start``, with ``TAGSERVE_HEARTBEAT_TIMEOUT_S=T``), whose
  worker main is swapped, in the bench process only, for :func:`tiny_http_worker`: the same
  steps as ``run_http_worker`` (parent-death signal, own process group, ``TAGSERVE_HTTP_NICE``,
  the shared listening socket, ``DrainingServer`` with the shared heartbeat and tagserve's
  uvicorn settings) serving the tiny app instead of tagserve's.

For each: (1) GET / on 32 keep-alive connections for --seconds (context only: the client
shares the machine); (2) one request hangs a worker's loop, then for --window seconds GET /
arrives at 100 new connections a second (open loop, each its own client, 2 s timeout): the
share lost, and whether and when the manager kills and replaces the hung worker (worker pids
read from /proc every 20 ms); (3) crash loop, on a fresh start: a worker is SIGKILLed 5
times, each replacement as soon as its pid appears, with the delays from kill to replacement
(does the manager back off?), the same 100 new connections a second meanwhile; (4) a worker
that cannot boot, on a fresh start: the app's import is made to fail (a marker file), one
worker is SIGKILLed, and for --boot-window seconds GET / arrives at 100 new connections a
second: the share lost, whether the manager is still up, how many workers run and answer,
and how many boot attempts were made (distinct new worker pids, from /proc and from the
app's own import log); then the marker is removed: are 2 workers serving again within
--recover seconds? Every step is bounded in time; every process started here is stopped at
the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parent.parent
VENV = Path(tempfile.gettempdir()) / "tagserve-bench-gunicorn-venv"
KEEP_ALIVE_S = 75  # tagserve's default, given to the other two as well
CLIENT_TIMEOUT_S = 2.0
RATE = 100.0  # new requests a second during the hang and the crash loop
MANAGERS = ("uvicorn", "gunicorn", "tagserve")

APP_SOURCE = '''\
"""The tiny app every manager serves: GET / answers the pid; GET /hang blocks the loop;
the import fails while a file ``broken`` lies next to this one."""

import os
import time
from pathlib import Path

HUNG = Path(__file__).with_name("hung.pid")
# Every import (every worker that tries to boot) leaves its pid; while the marker exists
# the import fails, as an app with a broken deploy or a missing setting would.
with Path(__file__).with_name("imports.log").open("a") as _log:
    _log.write(f"{os.getpid()}\\n")
if Path(__file__).with_name("broken").exists():
    raise RuntimeError("tinyapp cannot boot: the marker file 'broken' exists")


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    if scope["path"] == "/hang":
        HUNG.write_text(str(os.getpid()))
        time.sleep(3600)  # an async handler that blocks its event loop
    body = str(os.getpid()).encode()
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
'''


# --- (c) tagserve's supervisor with the tiny app -------------------------------------------


class _AppState:
    """What ``DrainingServer`` needs of tagserve's app: ``state.status`` to set on a drain."""

    def __init__(self) -> None:
        self.state = type("State", (), {"status": "ok"})()


def tiny_http_worker(
    index: int, listener: socket.socket, models: list[Any], heartbeat: Any = None
) -> None:
    """``supervisor.run_http_worker`` with the tiny app in place of ``create_app(...)`` (no
    model cards, no model workers): the same process set-up, socket and server."""
    from tagserve.processes import die_with_parent
    from tagserve.service.runtime.http_server import (
        DrainingServer,
        configure_logging,
        uvicorn_config,
    )
    from tagserve.service.settings import Settings

    die_with_parent()
    os.setpgrp()
    settings = Settings()
    os.nice(settings.http_nice)
    configure_logging(settings)
    from tinyapp import app  # type: ignore[import-not-found]  # on PYTHONPATH

    config = uvicorn_config(settings, app)
    server = DrainingServer(config, _AppState(), settings.drain_notice_s, heartbeat)  # type: ignore[arg-type]
    server.run(sockets=[listener])


def tagserve_manager(port: int, workers: int) -> int:
    """The (c) manager process: ``Supervisor`` as ``tagserve serve`` builds it, minus models."""
    from tagserve.service.runtime import supervisor
    from tagserve.service.runtime.http_server import configure_logging
    from tagserve.service.runtime.system import listening_socket, prepare_metrics_dir
    from tagserve.service.settings import Settings

    settings = Settings()
    prepare_metrics_dir()
    configure_logging(settings)
    supervisor.run_http_worker = tiny_http_worker  # read by Supervisor._start at each start
    with listening_socket(HOST, port) as listener:
        return supervisor.Supervisor(
            workers, listener, [], heartbeat_timeout_s=settings.heartbeat_timeout_s
        ).run()


# --- processes -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def gunicorn_venv() -> Path:
    """A throwaway virtualenv with gunicorn and uvicorn-worker, and this venv's uvicorn,
    uvloop and httptools versions (so every manager runs the same server code)."""
    python = VENV / "bin" / "python"
    if not (VENV / "bin" / "gunicorn").exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
        pins = [f"{name}=={version(name)}" for name in ("uvicorn", "uvloop", "httptools")]
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "gunicorn", "uvicorn-worker", *pins],
            check=True,
            timeout=600,
        )
    return VENV


def version(name: str, python: Path | None = None) -> str:
    if python is not None and not python.exists():
        return "-"
    if python is None:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return "-"
    code = f"import importlib.metadata as m; print(m.version({name!r}))"
    done = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=60)
    return done.stdout.strip() or "-"


def command(manager: str, port: int, app_dir: Path, hang_timeout: int) -> list[str]:
    if manager == "uvicorn":
        return [
            sys.executable, "-m", "uvicorn", "tinyapp:app", "--host", HOST, "--port", str(port),
            "--workers", "2", "--no-access-log", "--timeout-keep-alive", str(KEEP_ALIVE_S),
        ]  # fmt: skip
    if manager == "gunicorn":
        return [
            str(VENV / "bin" / "gunicorn"), "-k", "uvicorn_worker.UvicornWorker", "-w", "2",
            "--timeout", str(hang_timeout), "--keep-alive", str(KEEP_ALIVE_S),
            "-b", f"{HOST}:{port}", "--chdir", str(app_dir), "tinyapp:app",
        ]  # fmt: skip
    code = "import sys; from bench.process_managers import tagserve_manager as m; "
    code += f"sys.exit(m({port}, 2))"
    return [sys.executable, "-c", code]


@contextlib.contextmanager
def running(manager: str, app_dir: Path, hang_timeout: int, log: Path) -> Iterator[Any]:
    port = free_port()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(app_dir), str(REPO)])
    env["TAGSERVE_HEARTBEAT_TIMEOUT_S"] = str(hang_timeout)
    env["TAGSERVE_KEEP_ALIVE_S"] = str(KEEP_ALIVE_S)
    env["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="metrics-", dir=app_dir)
    with log.open("ab") as out:
        process = subprocess.Popen(
            command(manager, port, app_dir, hang_timeout),
            cwd=REPO if manager == "tagserve" else app_dir,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    watch = Watch(process.pid)
    try:
        yield process, port, watch
    finally:
        stop(process, watch)


def stop(process: subprocess.Popen[bytes], watch: Watch) -> None:
    """SIGTERM (a drain), then SIGKILL for the group and for any worker seen still alive
    (tagserve's workers have their own process group, and die with their parent)."""
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    for pid in watch.seen:
        if alive(pid) and (REPO.name.encode() in cmdline(pid) or b"tinyapp" in cmdline(pid)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def alive(pid: int) -> bool:
    """Running and not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def worker_pids(parent: int) -> set[int]:
    """The parent's live children, multiprocessing's resource tracker left out."""
    found = set()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if int(ppid) == parent and state != "Z":
            found.add(int(entry.name))
    return {pid for pid in found if b"resource_tracker" not in cmdline(pid)}


@dataclass
class Watch:
    """Worker pids of one manager, polled every 20 ms: when each appeared and went."""

    parent: int
    current: set[int] = field(default_factory=set)
    seen: set[int] = field(default_factory=set)
    born: dict[int, float] = field(default_factory=dict)
    gone: dict[int, float] = field(default_factory=dict)

    def poll(self) -> None:
        now, pids = time.monotonic(), worker_pids(self.parent)
        for pid in pids - self.seen:
            self.born[pid] = now
        for pid in self.current - pids:
            self.gone[pid] = now
        self.seen |= pids
        self.current = pids

    async def run(self) -> None:
        while True:
            self.poll()
            await asyncio.sleep(0.02)


# --- client --------------------------------------------------------------------------------


class Connection:
    """One HTTP/1.1 keep-alive connection; ``get`` returns the pid the worker answers."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, path: str = "/") -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(HOST, self.port)
        assert self.reader is not None
        self.writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        length = next(
            int(line.split(":", 1)[1])
            for line in lines
            if line.lower().startswith("content-length")
        )
        body = await self.reader.readexactly(length)
        if status != 200:
            raise ValueError(f"status {status}")
        return int(body)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.transport.abort()
        self.reader = self.writer = None


@dataclass
class Result:
    started: float
    seconds: float
    pid: int | None  # None: failed or timed out


async def user(port: int, until: float, results: list[Result], fresh: bool = False) -> None:
    connection = Connection(port)
    while time.monotonic() < until:
        started = time.monotonic()
        try:
            pid: int | None = await asyncio.wait_for(connection.get(), CLIENT_TIMEOUT_S)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError, StopIteration):
            pid = None
        if pid is None or fresh:
            connection.close()
        results.append(Result(started, time.monotonic() - started, pid))
        if pid is None:
            await asyncio.sleep(0.05)  # a refused connection must not spin
    connection.close()


async def load(port: int, users: int, seconds: float, fresh: bool = False) -> list[Result]:
    results: list[Result] = []
    until = time.monotonic() + seconds
    await asyncio.gather(*(user(port, until, results, fresh) for _ in range(users)))
    return results


async def serving(port: int, watch: Watch, timeout: float = 60.0, pid: int | None = None) -> float:
    """Seconds until every current worker (or ``pid``) has answered a fresh connection."""
    started = time.monotonic()
    answered: set[int] = set()
    while time.monotonic() - started < timeout:
        watch.poll()
        want = {pid} if pid is not None else watch.current
        if want and want <= answered and (pid is not None or len(want) >= 2):
            return time.monotonic() - started
        for result in await load(port, 8, 0.2, fresh=True):
            if result.pid is not None:
                answered.add(result.pid)
    raise TimeoutError(f"workers {sorted(watch.current)} not all serving in {timeout:.0f} s")


async def one(port: int, results: list[Result]) -> None:
    """A request on a new connection (a new client), closed after it."""
    connection, started = Connection(port), time.monotonic()
    try:
        pid: int | None = await asyncio.wait_for(connection.get(), CLIENT_TIMEOUT_S)
    except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError, StopIteration):
        pid = None
    connection.close()
    results.append(Result(started, time.monotonic() - started, pid))


async def paced(port: int, rate: float, seconds: float, results: list[Result]) -> None:
    """Open loop: ``rate`` new requests a second whatever the answers, each its own client,
    so that the share that fails is the share of the time a request is lost."""
    started, tasks = time.monotonic(), []
    try:
        for i in range(int(rate * seconds)):
            await asyncio.sleep(max(0.0, started + i / rate - time.monotonic()))
            tasks.append(asyncio.ensure_future(one(port, results)))
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()


def share(results: list[Result]) -> str:
    failed = sum(r.pid is None for r in results)
    return f"{failed}/{len(results)} ({100 * failed / max(1, len(results)):.1f}%)"


# --- the three measurements ----------------------------------------------------------------


async def throughput(port: int, seconds: float) -> dict[str, str]:
    await load(port, 32, 1.0)  # warm-up
    results = await load(port, 32, seconds)
    ok = sorted(r.seconds for r in results if r.pid is not None)
    q = statistics.quantiles(ok, n=100) if len(ok) > 1 else [float("nan")] * 99
    by_pid = sorted(
        (sum(r.pid == pid for r in results) for pid in {r.pid for r in results} if pid),
        reverse=True,
    )
    return {
        "req/s": f"{len(ok) / seconds:,.0f}",
        "split between workers": "/".join(f"{100 * n / max(1, len(ok)):.0f}%" for n in by_pid),
        "p50 ms": f"{1000 * q[49]:.1f}",
        "p99 ms": f"{1000 * q[98]:.1f}",
        "failed": share(results),
    }


async def hung_loop(
    port: int, watch: Watch, app_dir: Path, window: float, hang_timeout: int
) -> dict[str, str]:
    hung_file = app_dir / "hung.pid"
    hung_file.unlink(missing_ok=True)
    arrivals: list[Result] = []
    background = asyncio.ensure_future(paced(port, RATE, window + 1.0, arrivals))
    await asyncio.sleep(1.0)
    started = time.monotonic()
    hanging = Connection(port)
    hang = asyncio.ensure_future(hanging.get("/hang"))
    while not hung_file.exists() and time.monotonic() - started < 5:
        await asyncio.sleep(0.01)
    hung = int(hung_file.read_text()) if hung_file.exists() else None
    await background
    results = [r for r in arrivals if r.started >= started]
    hang.cancel()
    hanging.close()
    killed = watch.gone.get(hung) if hung is not None else None
    replacement = min(
        (p for p, born in watch.born.items() if killed is not None and born >= killed - 0.05),
        key=lambda p: watch.born[p],
        default=None,
    )
    answers = [r.started + r.seconds for r in results if replacement and r.pid == replacement]
    end = started + window
    row = {
        "hung worker killed after": f"{killed - started:.1f} s" if killed else "never",
        "replacement serving after": f"{min(answers) - started:.1f} s" if answers else "-",
        f"requests failed or timed out, {window:.0f} s": share(results),
        f"failed, first {hang_timeout} s": share(
            [r for r in results if r.started < started + hang_timeout]
        ),
        "failed, last 10 s": share([r for r in results if r.started >= end - 10]),
    }
    if hung is not None and alive(hung):
        os.kill(hung, signal.SIGKILL)  # the manager did not: end it before stopping
    return row


async def crash_loop(port: int, watch: Watch, budget: float = 30.0) -> dict[str, str]:
    await serving(port, watch)
    arrivals: list[Result] = []
    background = asyncio.ensure_future(paced(port, RATE, 2 * budget, arrivals))
    started = time.monotonic()
    target = min(watch.current)
    delays: list[str] = []
    last_kill = started
    while len(delays) < 5:
        before = set(watch.seen)
        last_kill = time.monotonic()
        with contextlib.suppress(ProcessLookupError):
            os.kill(target, signal.SIGKILL)
        new: set[int] = set()
        while not new and time.monotonic() - started < budget:
            await asyncio.sleep(0.01)
            watch.poll()
            new = watch.current - before
        if not new:
            delays.append("none")
            break
        target = min(new)
        delays.append(f"{watch.born[target] - last_kill:.2f}")
    back = None
    left = max(5.0, budget - (time.monotonic() - started))
    with contextlib.suppress(TimeoutError):
        back = await serving(port, watch, timeout=left, pid=target)
    background.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await background
    return {
        "kill -> replacement pid, s (5 kills)": ", ".join(delays),
        "last replacement serving after": (
            f"{time.monotonic() - last_kill:.1f} s" if back is not None else "not in budget"
        ),
        "requests failed meanwhile": share(arrivals),
        "workers after": str(len(watch.current)),
    }


async def boot_failure(
    process: subprocess.Popen[bytes],
    port: int,
    watch: Watch,
    app_dir: Path,
    window: float,
    recover: float,
) -> dict[str, str]:
    """(4): the app's import fails for every new worker; one worker is SIGKILLed."""
    await serving(port, watch)
    # Killed after 10.5 s of life, so that it does not count as dying young in tagserve's
    # supervisor (YOUNG_S): as a worker that had been serving for a while.
    await asyncio.sleep(
        max(0.0, max(watch.born[p] for p in watch.current) + 10.5 - time.monotonic())
    )
    imports, marker = app_dir / "imports.log", app_dir / "broken"

    def imported() -> set[int]:
        text = imports.read_text() if imports.exists() else ""
        return {int(line) for line in text.split()}

    before_pids, before_imports = set(watch.seen), imported()
    exited: list[float] = []

    async def manager_exit() -> None:
        while process.poll() is None:
            await asyncio.sleep(0.02)
        exited.append(time.monotonic())

    exit_watch = asyncio.ensure_future(manager_exit())
    arrivals: list[Result] = []
    marker.touch()
    try:
        started = time.monotonic()
        os.kill(min(watch.current), signal.SIGKILL)
        await paced(port, RATE, window, arrivals)
        watch.poll()
        up = process.poll() is None
        attempts = (watch.seen - before_pids) | (imported() - before_imports)
        attempts.discard(process.pid)
        end = started + window
        last = [r for r in arrivals if r.started >= end - 5]
        answering = {r.pid for r in last if r.pid is not None}
        row = {
            f"requests failed, {window:.0f} s": share(arrivals),
            "failed, last 5 s": share(last),
            f"manager up at {window:.0f} s": (
                "yes"
                if up
                else f"no: exited {exited[0] - started:.1f} s after the kill"
                if exited
                else "no"
            ),
            "worker processes then": str(len(watch.current)),
            "workers answering, last 5 s": str(len(answering)),
            "boot attempts (new worker pids)": str(len(attempts)),
        }
    finally:
        marker.unlink(missing_ok=True)
    fixed = time.monotonic()
    back = None
    if process.poll() is None:
        with contextlib.suppress(TimeoutError):
            back = await serving(port, watch, timeout=recover)
    row[f"2 workers serving after marker removed (<= {recover:.0f} s)"] = (
        f"{back:.1f} s"
        if back is not None
        else "no: manager exited"
        if process.poll() is not None
        else f"no, {len(watch.current)} after {time.monotonic() - fixed:.0f} s"
    )
    exit_watch.cancel()
    return row


async def measure(manager: str, args: argparse.Namespace, app_dir: Path) -> dict[str, dict]:
    log = app_dir / f"{manager}.log"
    rows: dict[str, dict] = {}
    with running(manager, app_dir, args.hang_timeout, log) as (process, port, watch):
        poller = asyncio.ensure_future(watch.run())
        try:
            rows["start"] = {"both workers serving after": f"{await serving(port, watch):.1f} s"}
            rows["throughput"] = await throughput(port, args.seconds)
            rows["hang"] = await hung_loop(port, watch, app_dir, args.window, args.hang_timeout)
            rows["hang"]["manager up"] = "yes" if process.poll() is None else "no"
        finally:
            poller.cancel()
    with running(manager, app_dir, args.hang_timeout, log) as (process, port, watch):
        poller = asyncio.ensure_future(watch.run())
        try:
            rows["crash"] = await crash_loop(port, watch)
            rows["crash"]["manager up"] = "yes" if process.poll() is None else "no"
        finally:
            poller.cancel()
    with running(manager, app_dir, args.hang_timeout, log) as (process, port, watch):
        poller = asyncio.ensure_future(watch.run())
        try:
            rows["boot"] = await boot_failure(
                process, port, watch, app_dir, args.boot_window, args.recover
            )
        finally:
            poller.cancel()
    return rows


def table(title: str, rows: dict[str, dict[str, str]]) -> str:
    columns = list(next(iter(rows.values())))
    lines = [f"### {title}", "", "| manager | " + " | ".join(columns) + " |"]
    lines.append("|---" * (len(columns) + 1) + "|")
    for name, row in rows.items():
        lines.append(f"| {name} | " + " | ".join(row.get(c, "-") for c in columns) + " |")
    return "\n".join(lines) + "\n"


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hang-timeout", type=int, default=10, help="gunicorn --timeout and "
                        "TAGSERVE_HEARTBEAT_TIMEOUT_S (uvicorn has no such setting)")  # fmt: skip
    parser.add_argument("--window", type=float, default=40.0, help="seconds after the hang")
    parser.add_argument("--seconds", type=float, default=5.0, help="throughput run")
    parser.add_argument("--boot-window", type=float, default=20.0, help="seconds of (4) with "
                        "the app's import failing")  # fmt: skip
    parser.add_argument("--recover", type=float, default=40.0, help="(4): the most seconds "
                        "to wait for 2 workers once the import works again")  # fmt: skip
    parser.add_argument("--only", default=",".join(MANAGERS))
    args = parser.parse_args()
    managers = [m for m in args.only.split(",") if m]
    assert set(managers) <= set(MANAGERS), managers
    if "gunicorn" in managers:
        gunicorn_venv()
    python = VENV / "bin" / "python"
    print(f"machine: {os.cpu_count()} cores, {cpu_model()}, Python {platform.python_version()}")
    print(
        f"uvicorn {version('uvicorn')}, uvloop {version('uvloop')}, httptools "
        f"{version('httptools')}; gunicorn {version('gunicorn', python)}, uvicorn-worker "
        f"{version('uvicorn-worker', python)} (in {VENV}); 2 workers each, hang timeout "
        f"{args.hang_timeout} s (gunicorn --timeout, TAGSERVE_HEARTBEAT_TIMEOUT_S; none in "
        f"uvicorn), client timeout {CLIENT_TIMEOUT_S:.0f} s"
    )
    results: dict[str, dict[str, dict]] = {}
    with tempfile.TemporaryDirectory(prefix="tagserve-pm-") as tmp:
        app_dir = Path(tmp)
        (app_dir / "tinyapp.py").write_text(APP_SOURCE)
        for manager in managers:
            print(f"... {manager}", file=sys.stderr, flush=True)
            try:
                results[manager] = asyncio.run(measure(manager, args, app_dir))
            except Exception as error:
                log = (app_dir / f"{manager}.log").read_text(errors="replace")
                sys.exit(f"{manager}: {error!r}\n{textwrap.indent(log[-3000:], '  ')}")
    print()
    sections = [
        ("start", "Start-up"),
        ("throughput", f"1. GET / at concurrency 32 for {args.seconds:.0f} s (context only)"),
        (
            "hang",
            f"2. One worker's event loop hung: GET / at {RATE:.0f} new connections/s for "
            f"{args.window:.0f} s",
        ),
        (
            "crash",
            "3. Crash loop: a worker SIGKILLed 5 times, each replacement once its pid shows "
            f"(GET / at {RATE:.0f} new connections/s meanwhile)",
        ),
        (
            "boot",
            "4. A worker that cannot boot: the app's import fails, a worker is SIGKILLed, GET / "
            f"at {RATE:.0f} new connections/s for {args.boot_window:.0f} s, then the import is "
            "fixed",
        ),
    ]
    for key, title in sections:
        print(table(title, {m: r[key] for m, r in results.items()}))


if __name__ == "__main__":
    main()
