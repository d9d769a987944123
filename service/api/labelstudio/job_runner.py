"""One training job from Label Studio, in a process of its own (``python -m`` this module,
started by :func:`.jobs.start_job` with the job's folder and the jobs lock it holds):

1. the project's export, from Label Studio's API (``GET /api/projects/ID/export``, the
   token read from stdin) unless the request brought it;
2. ``tagserve train --train export.json --format label-studio --dev-split 0.1`` (and
   TAGSERVE_LABELSTUDIO_TRAIN_ARGS) into a hidden ``.NAME.tmp`` folder of the models
   folder, at a lower CPU priority than serving, stopped past the time limit or when the
   server it belongs to stops;
3. the artifact renamed into place as ``NAME`` (swapped with the old version in one step
   where Linux can), the next version number on its card;
4. SIGHUP to ``tagserve serve``, whose reload serves the new version with no request lost.

Every outcome is written to the job's ``state.json``: ``succeeded``, or ``failed`` with one
line saying why (the trainer's own error line when it fails).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tagserve.processes import die_with_parent
from tagserve.service.api.labelstudio import job_files as files

EXPORT_TIMEOUT_S = 300.0
MAX_EXPORT_BYTES = 1 << 30
TRAIN_NICE = 10  # as the HTTP workers: the model workers (nice 0) get the cores first
# What the trainer does not need of the server's environment.
PRIVATE_ENV = ("TAGSERVE_LABELSTUDIO_TOKEN", "TAGSERVE_API_KEYS", "TAGSERVE_SERVER_PID")


class JobFailed(Exception):
    """The job cannot go on; the message is the state's one-line error."""


def main(argv: list[str]) -> int:
    job_dir, lock = Path(argv[0]), int(argv[1])
    os.set_inheritable(lock, False)  # held until this process ends; the trainer has none
    token = sys.stdin.readline().strip()
    spec = files.read_json(job_dir / files.SPEC_FILE)
    with contextlib.suppress(OSError):
        os.nice(max(0, TRAIN_NICE - os.nice(0)))
    files.update_state(job_dir, status="running", started_at=files.now())
    try:
        outcome = run(job_dir, spec, token)
    except JobFailed as failure:
        files.update_state(job_dir, status="failed", finished_at=files.now(), error=str(failure))
        return 1
    except Exception as error:
        problem = f"{type(error).__name__}: {error}"
        files.update_state(job_dir, status="failed", finished_at=files.now(), error=problem)
        raise  # the traceback goes to runner.log
    finally:
        os.close(lock)  # the job is over once its state says so: the next may start
    files.update_state(job_dir, status="succeeded", finished_at=files.now(), **outcome)
    return 0


def run(job_dir: Path, spec: dict[str, Any], token: str) -> dict[str, Any]:
    """The job's steps (see the module's docstring); what the state records of them."""
    deadline = time.monotonic() + float(spec["timeout_s"])
    project, name = spec["project"], spec["model"]
    export = job_dir / files.EXPORT_FILE
    if not export.is_file():
        body = fetch_export(spec["labelstudio_url"], project, token, deadline)
        export.write_bytes(body)
    tasks, annotated = count_annotated(export, project)
    files.update_state(job_dir, tasks=tasks, annotated=annotated)
    if not annotated:
        raise JobFailed(
            f"project {project} has no annotated tasks to train on (its export holds {tasks})"
        )
    models_dir = Path(spec["models_dir"])
    target = models_dir / name
    version = next_version(target)
    files.update_state(job_dir, version=version)
    partial = models_dir / f".{name}.tmp"
    _remove(partial)
    command = [
        sys.executable, "-m", "tagserve", "train", "--dev-split", "0.1", *spec["train_args"],
        "--train", str(export), "--format", "label-studio", "--name", name,
        "--version", version, "--output", str(partial), "--no-progress",
    ]  # fmt: skip
    summary = train(job_dir, command, deadline, spec)
    install(partial, target)
    return {**summary, "artifact": str(target), "reload": reload(spec.get("server"))}


def fetch_export(base: str, project: int, token: str, deadline: float) -> bytes:
    """The project's JSON export (finished tasks), read within the export time limit."""
    url = f"{base}/api/projects/{project}/export?exportType=JSON"
    until = min(deadline, time.monotonic() + EXPORT_TIMEOUT_S)
    where = f"export of project {project} from {url}"
    try:
        request = urllib.request.Request(url, headers=auth_header(base, token))
        with urllib.request.urlopen(request, timeout=30) as response:
            chunks, size = [], 0
            while chunk := response.read(1 << 20):
                chunks.append(chunk)
                size += len(chunk)
                if size > MAX_EXPORT_BYTES:
                    raise JobFailed(f"{where}: larger than {MAX_EXPORT_BYTES} bytes")
                if time.monotonic() > until:
                    raise JobFailed(f"{where}: not received within {EXPORT_TIMEOUT_S:g} s")
    except urllib.error.HTTPError as error:
        said = error.read(300).decode("utf-8", errors="replace").strip()
        hint = (
            f" (TAGSERVE_LABELSTUDIO_TOKEN must be the API token of a user who may export "
            f"project {project})"
            if error.code in (401, 403)
            else ""
        )
        raise JobFailed(f"{where}: HTTP {error.code} {error.reason}: {said[:200]}{hint}") from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise JobFailed(f"{where}: {reason}") from None
    return b"".join(chunks)


def auth_header(base: str, token: str) -> dict[str, str]:
    """Label Studio's ``Token`` header for a legacy token; a personal access token (a JWT
    refresh token) is exchanged for an access token first, as Label Studio's SDK does."""
    parts = token.split(".")
    if len(parts) != 3 or not all(parts):
        return {"Authorization": f"Token {token}"}
    request = urllib.request.Request(
        f"{base}/api/token/refresh/",
        data=json.dumps({"refresh": token}).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            access = json.loads(response.read(65_536))["access"]
    except urllib.error.HTTPError as error:
        raise JobFailed(
            f"Label Studio refused the personal access token "
            f"(TAGSERVE_LABELSTUDIO_TOKEN): HTTP {error.code} at {base}/api/token/refresh/"
        ) from None
    except (urllib.error.URLError, OSError, ValueError, KeyError) as error:
        raise JobFailed(f"exchanging the personal access token at {base}: {error}") from None
    return {"Authorization": f"Bearer {access}"}


def count_annotated(export: Path, project: int) -> tuple[int, int]:
    """Tasks in the export, and those with an annotation that was not cancelled."""
    try:
        tasks = json.loads(export.read_bytes())
    except ValueError as error:
        raise JobFailed(f"the export of project {project} is not JSON: {error}") from None
    if not isinstance(tasks, list):
        raise JobFailed(f"the export of project {project} is not a JSON list of tasks")
    annotated = sum(
        any(isinstance(a, dict) and not a.get("was_cancelled") for a in t.get("annotations", []))
        for t in tasks
        if isinstance(t, dict)
    )
    return len(tasks), annotated


def next_version(target: Path) -> str:
    """One more than the version on the card now in place (``1`` for a first one, or for
    a card whose version is not a whole number)."""
    card = files.read_json(target / "metadata.json")
    version = str(card.get("version", "")) if isinstance(card, dict) else ""
    return str(int(version) + 1) if version.isdigit() else "1"


def train(job_dir: Path, command: list[str], deadline: float, spec: dict[str, Any]) -> dict:
    """Run the trainer into ``train.log``; its summary, or :class:`JobFailed` with its
    error line, or when it runs past the deadline or the server stops."""
    # Unbuffered: the job's state shows the trainer's latest lines while it runs.
    env = {k: v for k, v in os.environ.items() if k not in PRIVATE_ENV} | {"PYTHONUNBUFFERED": "1"}
    server = spec.get("server")
    with (job_dir / files.LOG_FILE).open("ab") as log:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            cwd=job_dir, env=env, start_new_session=True, preexec_fn=die_with_parent,
        )  # fmt: skip
    try:
        while True:
            try:
                code = process.wait(timeout=1.0)
                break
            except subprocess.TimeoutExpired:
                pass
            if time.monotonic() > deadline:
                raise JobFailed(
                    f"training ran past {spec['timeout_s']:g} s "
                    "(TAGSERVE_LABELSTUDIO_TRAIN_TIMEOUT_S) and was stopped"
                )
            if server and not files.running(server["pid"], server["start"]):
                raise JobFailed(f"the server (pid {server['pid']}) stopped; training abandoned")
    finally:
        _stop(process)
    lines = files.log_tail(job_dir, 200)
    if code != 0:
        errors = [line for line in lines if line.startswith("tagserve: error: ")]
        last = (
            errors[-1].removeprefix("tagserve: error: ") if errors else lines[-1] if lines else ""
        )
        raise JobFailed(f"tagserve train failed (exit status {code}): {last}"[:1000])
    summaries = [json.loads(line) for line in lines if line.startswith('{"output"')]
    summary = summaries[-1] if summaries else {}
    return {key: summary.get(key) for key in ("dev_f1", "best_epoch")}


def _stop(process: subprocess.Popen[bytes]) -> None:
    """The trainer and anything it started, if still running."""
    if process.poll() is not None:
        return
    for sig, wait_s in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(OSError):
            os.killpg(process.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(wait_s)
            return


def install(partial: Path, target: Path) -> None:
    """Put the artifact at ``target``: a plain rename when there is none yet; else swapped
    with the old one in one step (Linux ``renameat2``), so the name never goes missing, or
    two renames where that is not available. The old version is deleted (a symlink to a
    release folder is unlinked; the folder is left alone)."""
    if not (target.exists() or target.is_symlink()):
        os.rename(partial, target)
        return
    if _exchange(partial, target):
        old = partial
    else:
        old = target.with_name(f".{target.name}.old")
        _remove(old)
        os.rename(target, old)
        os.rename(partial, target)
    _remove(old)


def _exchange(a: Path, b: Path) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    renameat2.argtypes = [
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_uint,
    ]
    at_fdcwd, rename_exchange = -100, 2
    return bool(renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0)


def _remove(path: Path) -> None:
    if path.is_symlink():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


def reload(server: dict[str, Any] | None) -> str:
    """SIGHUP to the ``tagserve serve`` this job belongs to, if it still runs; what was done."""
    if not server:
        return "not requested: this server is not tagserve serve; send it SIGHUP to reload"
    pid = server["pid"]
    if not files.running(pid, server["start"]):
        return f"not requested: tagserve serve (pid {pid}) has stopped"
    os.kill(pid, signal.SIGHUP)
    return f"requested: SIGHUP to tagserve serve (pid {pid})"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
