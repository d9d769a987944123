"""A training job's folder, shared by the HTTP workers that start and show jobs and the job
process that runs one (:mod:`.job_runner`): every worker reads the same files, so any of
them answers for a job another started.

``jobs/<id>/`` holds ``spec.json`` (what to do), ``state.json`` (what happened: rewritten
whole, by rename, so a reader never sees half of it), ``export.json`` (the project's
export), ``train.log`` (the trainer's output) and ``pid`` (the job process). ``jobs/.lock``
is held (``flock``) by the running job's process for its whole life: one job at a time,
and the kernel lets go of it however that process ends. ``jobs/current`` names the job
that holds it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from pathlib import Path
from typing import Any

from tagserve.processes import pid_alive

STATE_FILE = "state.json"
SPEC_FILE = "spec.json"
EXPORT_FILE = "export.json"
LOG_FILE = "train.log"
PID_FILE = "pid"
LOCK_FILE = ".lock"
CURRENT_FILE = "current"
JOB_ID = re.compile(r"\d{8}T\d{6}Z-[0-9a-f]{6}")
FINAL = ("succeeded", "failed")
LOG_LINES = 20
# A job whose process has not written its pid this long after it was queued never started.
START_GRACE_S = 60.0
_PROC = Path("/proc/self")


def now() -> str:
    """UTC, to the second, as ISO 8601 (what the state records)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def write_json(path: Path, value: Any) -> None:
    """Write ``path`` whole: a temporary file renamed over it."""
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(value, indent=1, ensure_ascii=False), encoding="utf-8")
    os.replace(partial, path)


def read_json(path: Path) -> Any:
    """``path``'s JSON, or None when it is missing or not readable."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def update_state(job_dir: Path, **changes: Any) -> dict[str, Any]:
    """The job's state with ``changes`` written (only the job's own process and, once that
    has ended, the process that started it ever write it)."""
    state = read_json(job_dir / STATE_FILE) or {}
    state.update(changes)
    write_json(job_dir / STATE_FILE, state)
    return state


def process_start(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, Linux ``/proc``), telling it
    from a later process given the same pid; None when no such process runs (a zombie, one
    that has ended but is not yet reaped, counts as ended). Without ``/proc``: "" for any
    live pid."""
    if not _PROC.is_dir():
        return "" if pid_alive(pid) else None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # the name in parentheses may hold spaces
    return None if fields[0] in ("Z", "X") else fields[19]


def running(pid: int, start: str | None) -> bool:
    """Whether the process recorded as ``pid`` started at ``start`` still runs."""
    return start is not None and process_start(pid) == start


def write_pid(job_dir: Path, pid: int) -> None:
    """Record the job process, with its start time, for :func:`process_alive`."""
    (job_dir / PID_FILE).write_text(f"{pid} {process_start(pid) or ''}\n")


def process_alive(job_dir: Path) -> bool | None:
    """Whether the job's process runs; None when it has not recorded one yet."""
    with contextlib.suppress(OSError, ValueError):
        pid, _, start = (job_dir / PID_FILE).read_text().strip().partition(" ")
        return running(int(pid), start or None)
    return None


def log_tail(job_dir: Path, lines: int = LOG_LINES) -> list[str]:
    """The last lines of the trainer's output (read from the file's end, so a long log
    costs no more than a short one)."""
    try:
        with (job_dir / LOG_FILE).open("rb") as log:
            log.seek(0, os.SEEK_END)
            log.seek(max(0, log.tell() - 16_384))
            text = log.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    return [line for line in text.splitlines() if line.strip()][-lines:]


def with_liveness(job_dir: Path, state: dict[str, Any]) -> dict[str, Any]:
    """The state as recorded, except that a job whose process has ended (killed, or its
    machine restarted) without recording an outcome is reported failed."""
    if state.get("status") in FINAL:
        return state
    alive = process_alive(job_dir)
    if alive is None:
        queued = state.get("created_epoch", 0)
        if time.time() - queued < START_GRACE_S:
            return state
        return {**state, "status": "failed", "error": "the job process never started"}
    if not alive:
        return {
            **state,
            "status": "failed",
            "error": "the job process ended without recording a result (killed?)",
        }
    return state
