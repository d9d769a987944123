"""Finding a server's processes from /proc (Linux), for tests that kill or count them."""

from __future__ import annotations

from pathlib import Path


def child_pids(pid: int) -> list[int]:
    """Direct children of a process."""
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children += [int(c) for c in (task / "children").read_text().split()]
    return children


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def worker_pids(server_pid: int) -> list[int]:
    """The model worker processes of a server (spawned children, not the resource tracker)."""
    return [
        pid
        for pid in child_pids(server_pid)
        if "spawn_main" in _cmdline(pid) and "resource_tracker" not in _cmdline(pid)
    ]


def pids_with_environment(marker: str) -> list[int]:
    """Every live process whose environment holds ``marker`` (e.g. ``TAGSERVE_TEST_MARK=...``),
    so a test can tell whether anything it started is left behind."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environment = (entry / "environ").read_bytes()
        except OSError:
            continue
        if marker.encode() in environment.split(b"\0"):
            found.append(int(entry.name))
    return found
