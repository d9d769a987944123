"""Training from Label Studio, the HTTP side: start a job in a process of its own, and read
jobs back. The job process (:mod:`.job_runner`) fetches the export, runs ``tagserve train``
and puts the artifact in place; the service never imports the trainer.

One job runs at a time per jobs folder, so per models folder by default: the job process
holds the folder's lock from start to end (the HTTP worker that starts it takes the lock
and hands it over), and a second request meanwhile is refused with the running job's id.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import secrets
import shlex
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from tagserve.model.artifact_files import SHIPPED_MODELS_DIR
from tagserve.service.api.labelstudio import job_files as files
from tagserve.service.errors import LimitExceeded
from tagserve.service.settings import Settings, server_pid

log = logging.getLogger(__name__)
RUNNER = "tagserve.service.api.labelstudio.job_runner"
KEEP_JOBS = 20  # finished jobs' folders kept (each holds an export)
COUNTS_FILE = "annotation-events.json"
FINISHING_S = 2.0  # how long a finished job's process may take to let go of the lock


class TrainingRefused(Exception):
    """No job can start now (answered 409): a setting is missing, or a job is running."""

    def __init__(self, detail: str, job: str | None = None, finishing: bool = False) -> None:
        super().__init__(detail)
        self.job = job
        self.finishing = finishing


def project_id(raw: Any, where: str) -> int:
    """The project's id from a webhook's ``project`` object, or from the ``"ID.TIMESTAMP"``
    Label Studio sends to ``/train`` and ``/predict``."""
    if isinstance(raw, dict):
        raw, where = raw.get("id"), f"{where}.id"
    text = str(raw).split(".", 1)[0] if isinstance(raw, str | int) else ""
    if not text.isdigit() or isinstance(raw, bool):
        raise LimitExceeded(where, f"must be the Label Studio project's id, got {raw!r}")
    return int(text)


def model_name(settings: Settings, project: int) -> str:
    """The model trained from ``project`` (TAGSERVE_LABELSTUDIO_MODEL_NAME)."""
    return settings.labelstudio_model_name.replace("{project}", str(project))


def start_job(
    settings: Settings, project: int, trigger: str, tasks: list[Any] | None = None
) -> dict[str, Any]:
    """Queue a job training ``project``'s model and start its process; its state. ``tasks``:
    the export itself (Label Studio's ``/train`` sends it), else it is fetched from Label
    Studio's API. :class:`TrainingRefused` when a setting is missing or a job runs."""
    name = model_name(settings, project)
    _check_settings(settings, name, fetch=tasks is None)
    jobs = settings.labelstudio_jobs()
    jobs.mkdir(mode=0o700, parents=True, exist_ok=True)
    lock = os.open(jobs / files.LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        _take(lock, jobs)
        job = f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{secrets.token_hex(3)}"
        job_dir = jobs / job
        job_dir.mkdir(mode=0o700)
        if tasks is not None:
            files.write_json(job_dir / files.EXPORT_FILE, tasks)
        files.write_json(job_dir / files.SPEC_FILE, _spec(settings, job, project, name, trigger))
        state = {
            "id": job,
            "project": project,
            "model": name,
            "version": None,
            "status": "queued",
            "trigger": trigger,
            "created_at": files.now(),
            "created_epoch": time.time(),
            "started_at": None,
            "finished_at": None,
            "error": None,
        }
        files.write_json(job_dir / files.STATE_FILE, state)
        (jobs / files.CURRENT_FILE).write_text(job)
        _prune(jobs, keep=job)
        _launch(settings, job_dir, lock)
        log.info("training job %s: model %s from project %d (%s)", job, name, project, trigger)
        return read_job(settings, job) or state
    finally:
        os.close(lock)  # the job process holds its own copy of the lock from here on


def _take(lock: int, jobs: Path) -> None:
    """Take the jobs lock, or :class:`TrainingRefused` naming the job that holds it. A job
    whose state is already final is letting go of it: that is waited for, briefly."""
    deadline = time.monotonic() + FINISHING_S
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            refused = _running(jobs)
            if not refused.finishing or time.monotonic() > deadline:
                raise refused from None
            time.sleep(0.02)


def _check_settings(settings: Settings, name: str, fetch: bool) -> None:
    missing = [
        setting
        for setting, value in (
            ("TAGSERVE_LABELSTUDIO_URL", settings.labelstudio_url),
            ("TAGSERVE_LABELSTUDIO_TOKEN", settings.labelstudio_token),
        )
        if fetch and not value
    ]
    if missing:
        raise TrainingRefused(
            f"training from Label Studio needs {' and '.join(missing)}: Label Studio's URL "
            "and an API token that may export the project (see the README, Training from "
            "Label Studio)"
        )
    models_dir = settings.models_dir
    if models_dir.resolve() == SHIPPED_MODELS_DIR.resolve():
        raise TrainingRefused(
            f"TAGSERVE_MODELS_DIR is the shipped models' folder ({models_dir}): set it to a "
            "folder of your own (with copies of the models to serve) for trained models to "
            "go in"
        )
    if not os.access(models_dir, os.W_OK):
        raise TrainingRefused(f"TAGSERVE_MODELS_DIR {models_dir} is not writable")
    if settings.models and name not in settings.models:
        raise TrainingRefused(
            f"TAGSERVE_MODELS lists the models to serve and {name} is not among them: a "
            "trained model would never be served; leave TAGSERVE_MODELS unset"
        )


def _running(jobs: Path) -> TrainingRefused:
    job = (
        (jobs / files.CURRENT_FILE).read_text().strip()
        if (jobs / files.CURRENT_FILE).is_file()
        else ""
    )
    state = files.read_json(jobs / job / files.STATE_FILE) if files.JOB_ID.fullmatch(job) else None
    if not state:
        return TrainingRefused("a training job is running; try again when it has finished")
    return TrainingRefused(
        f"training job {job} is {state.get('status')} (model {state.get('model')} from project "
        f"{state.get('project')}, since {state.get('started_at') or state.get('created_at')}): "
        f"one job at a time; see GET /labelstudio/jobs/{job}",
        job,
        state.get("status") in files.FINAL,
    )


def _spec(settings: Settings, job: str, project: int, name: str, trigger: str) -> dict[str, Any]:
    """What the job process needs besides the token (which reaches it on stdin only)."""
    pid = server_pid()
    start = files.process_start(pid) if pid is not None else None
    url = settings.labelstudio_url
    return {
        "job": job,
        "project": project,
        "model": name,
        "trigger": trigger,
        "models_dir": str(settings.models_dir.absolute()),
        "labelstudio_url": url,
        "train_args": shlex.split(settings.labelstudio_train_args),
        "timeout_s": settings.labelstudio_train_timeout_s,
        "server": {"pid": pid, "start": start} if start is not None else None,
    }


def _launch(settings: Settings, job_dir: Path, lock: int) -> None:
    """The job process, in a session of its own (a signal to the server's process group
    does not reach it; it follows the server itself), holding ``lock``."""
    with (job_dir / "runner.log").open("wb") as output:
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", RUNNER, str(job_dir), str(lock)],
                stdin=subprocess.PIPE,
                stdout=output,
                stderr=subprocess.STDOUT,
                cwd=job_dir,
                pass_fds=(lock,),
                start_new_session=True,
            )
        except OSError as error:
            error_line = f"could not start the job process: {error}"
            files.update_state(job_dir, status="failed", finished_at=files.now(), error=error_line)
            return
    files.write_pid(job_dir, process.pid)
    assert process.stdin is not None
    with contextlib.suppress(OSError):
        process.stdin.write((settings.labelstudio_token or "").encode() + b"\n")
        process.stdin.close()
    threading.Thread(target=_reap, args=(process, job_dir), daemon=True).start()


def _reap(process: subprocess.Popen[bytes], job_dir: Path) -> None:
    """Wait for the job process (no zombie left), and record its end if it could not."""
    code = process.wait()
    state = files.read_json(job_dir / files.STATE_FILE) or {}
    if state.get("status") not in files.FINAL:
        last = _last_line(job_dir / "runner.log")
        error = f"the job process exited with status {code}: {last}"
        files.update_state(job_dir, status="failed", finished_at=files.now(), error=error)


def _last_line(path: Path) -> str:
    with contextlib.suppress(OSError):
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
        return lines[-1][:500] if lines else "no output"
    return "no output"


def _prune(jobs: Path, keep: str) -> None:
    finished = sorted(
        p for p in jobs.iterdir() if files.JOB_ID.fullmatch(p.name) and p.name != keep
    )
    for old in finished[: max(0, len(finished) - (KEEP_JOBS - 1))]:
        shutil.rmtree(old, ignore_errors=True)


def read_job(settings: Settings, job: str) -> dict[str, Any] | None:
    """One job's state with the last lines of its log; None for an unknown id."""
    if not files.JOB_ID.fullmatch(job):
        return None
    job_dir = settings.labelstudio_jobs() / job
    state = files.read_json(job_dir / files.STATE_FILE)
    if not isinstance(state, dict):
        return None
    return {**_public(files.with_liveness(job_dir, state)), "log": files.log_tail(job_dir)}


def list_jobs(settings: Settings) -> list[dict[str, Any]]:
    """Every kept job, newest first, without logs."""
    jobs = settings.labelstudio_jobs()
    if not jobs.is_dir():
        return []
    found = []
    for job_dir in sorted(jobs.iterdir(), reverse=True):
        state = (
            files.read_json(job_dir / files.STATE_FILE)
            if files.JOB_ID.fullmatch(job_dir.name)
            else None
        )
        if isinstance(state, dict):
            found.append(_public(files.with_liveness(job_dir, state)))
    return found


def _public(state: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in state.items() if k != "created_epoch"}


def count_annotation(settings: Settings, project: int, reset: bool = False) -> int:
    """Count one annotation event of ``project`` (with ``reset``: start again from 0), in a
    file every HTTP worker shares; the count since the last training started."""
    jobs = settings.labelstudio_jobs()
    jobs.mkdir(mode=0o700, parents=True, exist_ok=True)
    with (jobs / ".counts.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        counts = files.read_json(jobs / COUNTS_FILE) or {}
        count = 0 if reset else int(counts.get(str(project), 0)) + 1
        counts[str(project)] = count
        files.write_json(jobs / COUNTS_FILE, counts)
    return count
