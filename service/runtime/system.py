"""What ``tagserve serve`` asks of the operating system: the cores it may use (CPU affinity
and cgroup quota), the listening socket every HTTP worker accepts on, and this server's run
folder (model sockets, prometheus-client's multiprocess files)."""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import socket
import tempfile
from pathlib import Path

from tagserve.processes import pid_alive


def available_cpus() -> int:
    """The cores this process may use: its CPU affinity, capped by a cgroup CPU quota (a
    container's ``--cpus`` or a Kubernetes CPU limit), at least 1."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    quota = cgroup_cpu_quota()
    cores = cores or 1
    return max(1, min(cores, math.ceil(quota)) if quota else cores)


def cgroup_cpu_quota(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """CPUs allowed by the cgroup quota (v2 ``cpu.max`` or v1 ``cfs_quota_us``), or None."""
    with contextlib.suppress(OSError, ValueError):
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    with contextlib.suppress(OSError, ValueError):
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return None if quota_us <= 0 else quota_us / period_us
    return None


class MetricsDirError(Exception):
    """``PROMETHEUS_MULTIPROC_DIR`` names a folder that is not prometheus-client's."""


RUN_PREFIX = "tagserve-run-"


def make_run_dir() -> Path:
    """A private folder (mode 0700) for this server's sockets and metrics files, named after
    its pid. Folders of earlier servers that died without cleaning up (SIGKILL, a power cut)
    are removed first: this user's, and only when no process has that pid any more."""
    base = Path(tempfile.gettempdir())
    for stale in base.glob(f"{RUN_PREFIX}*"):
        pid = stale.name.removeprefix(RUN_PREFIX).split("-", 1)[0]
        with contextlib.suppress(OSError):
            if pid.isdigit() and stale.stat().st_uid == os.getuid() and not pid_alive(int(pid)):
                shutil.rmtree(stale, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"{RUN_PREFIX}{os.getpid()}-"))


def prepare_metrics_dir(run_dir: Path | None = None) -> tuple[Path, bool]:
    """Put prometheus-client into multiprocess mode for this process and its children, with
    no samples of an earlier server: ``PROMETHEUS_MULTIPROC_DIR`` if set, else a new
    directory (the second value: whether it was made here, so the caller removes it). Must
    run before ``prometheus_client`` is imported.

    A directory the user names is never wiped: only the ``*.db`` files prometheus-client
    writes are deleted, and a folder holding anything else is refused (a mistyped path must
    not cost the user a folder).
    """
    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not given:
        directory = Path(tempfile.mkdtemp(prefix="tagserve-metrics-", dir=run_dir))
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
        return directory, True
    directory = Path(given)
    if not directory.exists():
        directory.mkdir(parents=True)
        return directory, False
    if not directory.is_dir():
        raise MetricsDirError(f"PROMETHEUS_MULTIPROC_DIR {directory} is not a directory")
    others = sorted(p.name for p in directory.iterdir() if p.suffix != ".db" or not p.is_file())
    if others:
        raise MetricsDirError(
            f"PROMETHEUS_MULTIPROC_DIR {directory} holds files that are not prometheus-client's "
            f"({', '.join(others[:3])}{', …' if len(others) > 3 else ''}); name an empty folder"
        )
    for stale in directory.glob("*.db"):
        stale.unlink()
    return directory, False


def listening_socket(host: str, port: int) -> socket.socket:
    """The one listening socket every HTTP worker accepts on (port 0 picks one). Shared, not
    one per worker with ``SO_REUSEPORT``: a worker whose event loop hangs stops accepting, and
    the others take every new connection (measured: bench/process_managers.py), where the
    kernel would go on handing a hung worker its share of them."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(address)
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock
