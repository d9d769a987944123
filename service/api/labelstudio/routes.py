"""The routes of Label Studio's ML-backend protocol, under ``/labelstudio`` (the URL a user
gives Label Studio is ``http://HOST:8000/labelstudio``):

- ``GET /health`` (and ``GET /``): ``{"status": "UP"}`` once the models are loaded, else 503;
- ``POST /setup``: the project's config and ``extra_params`` checked, ``{"model_version"}``;
- ``POST /predict``: one prediction per task, in task order;
- ``POST /webhook``, ``POST /train``, ``GET /jobs``: training from Label Studio
  (:mod:`.training_routes`).

With API keys set, every route but ``/health`` needs one: as ``Authorization: Bearer KEY``
or as HTTP Basic credentials with the key as password (Label Studio's ``BASIC_AUTH``).

Label Studio sends ``extra_params`` to ``/setup`` only (before each batch of predictions it
asks for), so they are remembered per project in the process that answered it: with several
HTTP workers or replicas, a ``/predict`` can reach another one. The ``model`` attribute and
``predicted_values`` in the config itself come with every request and never miss.

A project's own model (trained from it: TAGSERVE_LABELSTUDIO_MODEL_NAME) answers it once it
is served, unless the config or ``extra_params`` names another.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from tagserve.service.api.admission import Admission
from tagserve.service.api.auth import require_backend_key
from tagserve.service.api.labelstudio.binding import ExtraParams, bind, model_version, read_extra
from tagserve.service.api.labelstudio.config import read_config
from tagserve.service.api.labelstudio.jobs import model_name
from tagserve.service.api.labelstudio.predict import predict
from tagserve.service.api.labelstudio.training_routes import router as training_router
from tagserve.service.errors import ShuttingDown
from tagserve.service.inference.registry import LoadedModel
from tagserve.service.settings import Settings

PREFIX = "/labelstudio"
# Projects whose extra_params one process remembers (the oldest set up is forgotten first).
MAX_PROJECTS = 1000

router = APIRouter(prefix=PREFIX, include_in_schema=False)
protected = [Depends(require_backend_key)]
router.include_router(training_router)


class SetupRequest(BaseModel):
    """What Label Studio sends to ``/setup`` (more keys, such as its access token, are
    accepted and not kept)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    project: str | None = Field(None, max_length=200)
    label_config: str = Field(alias="schema")
    extra_params: Any = None


class PredictRequest(BaseModel):
    """What Label Studio sends to ``/predict``."""

    model_config = ConfigDict(extra="allow")

    tasks: list[dict[str, Any]]
    label_config: str
    project: str | None = Field(None, max_length=200)
    params: dict[str, Any] | None = None


@router.get("/")
@router.get("/health")
async def health(request: Request) -> Response:
    """Label Studio checks this before each setup; it needs no key."""
    status = request.app.state.status
    models: dict[str, LoadedModel] = request.app.state.models
    if status == "ok":
        body = {"status": "UP", "model_versions": [model_version(m) for m in models.values()]}
        return _json(body)
    return _json({"status": "DOWN", "detail": status}, 503)


@router.post("/setup", dependencies=protected)
async def setup(body: SetupRequest, request: Request) -> Response:
    """Check the config and ``extra_params`` as a prediction would read them."""
    _ready(request)
    config = read_config(body.label_config, "schema")
    extra = read_extra(body.extra_params)
    settings = _settings(request)
    binding = bind(
        config,
        request.app.state.models,
        settings.default_model,
        extra,
        "schema",
        _own_model(settings, body.project),
    )
    _remember(request, body.project, extra)
    return _json({"model_version": binding.model_version})


@router.post("/predict", dependencies=protected)
async def predict_tasks(body: PredictRequest, request: Request) -> Response:
    """Predictions for ``tasks`` under ``label_config``."""
    _ready(request)
    settings = _settings(request)
    config = read_config(body.label_config, "label_config")
    extra = _setups(request).get(body.project or "", ExtraParams())
    binding = bind(
        config,
        request.app.state.models,
        settings.default_model,
        extra,
        "label_config",
        _own_model(settings, body.project),
    )
    admission: Admission = request.app.state.admission
    length = request.headers.get("content-length", "")
    admission.admit(int(length) if length.isdigit() else 0, request.app.state.models.values())
    try:
        results = await predict(body.tasks, binding, settings)
    finally:
        admission.release()
    return _json({"results": results, "model_version": binding.model_version})


def _own_model(settings: Settings, project: str | None) -> str | None:
    """The name a model trained from ``project`` ("ID.TIMESTAMP") has."""
    head = (project or "").split(".", 1)[0]
    return model_name(settings, int(head)) if head.isdigit() else None


def _ready(request: Request) -> None:
    if request.app.state.status != "ok":
        raise ShuttingDown(f"the service is {request.app.state.status}")


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _setups(request: Request) -> OrderedDict[str, ExtraParams]:
    state = request.app.state
    setups: OrderedDict[str, ExtraParams] | None = getattr(state, "labelstudio_setups", None)
    if setups is None:
        setups = state.labelstudio_setups = OrderedDict()
    return setups


def _remember(request: Request, project: str | None, extra: ExtraParams) -> None:
    if not project:
        return
    setups = _setups(request)
    setups[project] = extra
    setups.move_to_end(project)
    while len(setups) > MAX_PROJECTS:
        setups.popitem(last=False)


def _json(body: dict[str, Any], status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")
