"""The training routes of the Label Studio backend, under ``/labelstudio``:

- ``POST /webhook``: ``START_TRAINING`` (what Label Studio's "Start Training" sends, and
  its "start training every N annotations") starts a job training the project's model;
  with TAGSERVE_LABELSTUDIO_TRAIN_EVERY=N, every Nth ``ANNOTATION_CREATED`` or
  ``ANNOTATION_UPDATED`` of a project does too; other events are acknowledged;
- ``POST /train``: the same, from the tasks in the body (what older Label Studio sends);
- ``GET /jobs``, ``GET /jobs/{id}`` (and Label Studio's ``POST /job_status``): the jobs'
  states, from files every HTTP worker reads.

A job started answers 201 with its id as ``job``; one that cannot start answers 409 naming
the missing setting or the running job (:mod:`.jobs`).
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict
from starlette.concurrency import run_in_threadpool

from tagserve.service.api.auth import require_backend_key
from tagserve.service.api.labelstudio.jobs import (
    TrainingRefused,
    count_annotation,
    list_jobs,
    project_id,
    read_job,
    start_job,
)
from tagserve.service.settings import Settings

ANNOTATION_EVENTS = ("ANNOTATION_CREATED", "ANNOTATION_UPDATED")
router = APIRouter(dependencies=[Depends(require_backend_key)])


class TrainRequest(BaseModel):
    """What Label Studio sends to ``/train``: the project's annotated tasks, as exported."""

    model_config = ConfigDict(extra="allow")

    annotations: list[Any]
    project: str | int


class JobStatusRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    job: str


@router.post("/webhook")
async def webhook(body: dict[str, Any], request: Request) -> Response:
    """Start training on ``START_TRAINING`` (or every Nth annotation event)."""
    settings = _settings(request)
    action = str(body.get("action", ""))[:100]
    if action == "START_TRAINING":
        project = project_id(body.get("project"), "project")
        return await _start(settings, project, "START_TRAINING")
    answer = {"status": "acknowledged", "action": action}
    every = settings.labelstudio_train_every
    if action not in ANNOTATION_EVENTS:
        return _json({**answer, "training": "not started: only START_TRAINING starts it"})
    if not every:
        return _json(
            {**answer, "training": "not started: TAGSERVE_LABELSTUDIO_TRAIN_EVERY is 0 "
             "(training starts on START_TRAINING only)"}
        )  # fmt: skip
    project = project_id(body.get("project"), "project")
    count = await run_in_threadpool(count_annotation, settings, project)
    if count < every:
        return _json({**answer, "training": f"not started: {count} of {every} annotation events"})
    try:
        state = await run_in_threadpool(start_job, settings, project, f"{count} annotation events")
    except TrainingRefused as refused:
        # Counted still: the next event after the running job tries again.
        return _json({**answer, "training": f"not started: {refused}"})
    await run_in_threadpool(count_annotation, settings, project, True)
    return _json({"status": "started", "action": action, "job": state["id"], "state": state}, 201)


@router.post("/train")
async def train(body: TrainRequest, request: Request) -> Response:
    """Start training from the tasks Label Studio sent (no export to fetch)."""
    project = project_id(body.project, "project")
    return await _start(_settings(request), project, "/train", body.annotations)


@router.get("/jobs")
async def jobs(request: Request) -> Response:
    """Every kept training job, newest first."""
    return _json({"jobs": await run_in_threadpool(list_jobs, _settings(request))})


@router.get("/jobs/{job}")
async def job(job: str, request: Request) -> Response:
    """One job's state and the last lines of its log."""
    return _job(await run_in_threadpool(read_job, _settings(request), job), job)


@router.post("/job_status")
async def job_status(body: JobStatusRequest, request: Request) -> Response:
    """Label Studio's name for ``GET /jobs/{id}``."""
    return _job(await run_in_threadpool(read_job, _settings(request), body.job), body.job)


async def _start(
    settings: Settings, project: int, trigger: str, tasks: list[Any] | None = None
) -> Response:
    try:
        state = await run_in_threadpool(start_job, settings, project, trigger, tasks)
    except TrainingRefused as refused:
        body: dict[str, Any] = {"detail": str(refused)}
        if refused.job:
            body["job"] = refused.job
        return _json(body, 409)
    return _json({"status": "started", "job": state["id"], "state": state}, 201)


def _job(state: dict[str, Any] | None, job: str) -> Response:
    if state is None:
        return _json(
            {"detail": f"job: no training job {job[:100]!r} (GET /labelstudio/jobs lists them)"},
            404,
        )
    return _json(state)


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _json(body: dict[str, Any], status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")
