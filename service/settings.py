"""Service configuration: one typed class read from ``TAGSERVE_*`` environment variables."""

from __future__ import annotations

import json
import os
import re
import shlex
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from tagserve.model.artifact_files import SHIPPED_MODELS_DIR
from tagserve.model.card import Precision
from tagserve.text.limits import CACHE_WORDS, MAX_SENTENCE_TOKENS

# `tagserve train` arguments a training job from Label Studio sets itself.
LABELSTUDIO_JOB_FLAGS = (
    "--train",
    "--dev",
    "--format",
    "--name",
    "--version",
    "--output",
    "--force",
)
_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# Set by `tagserve serve` for the processes it starts (not a setting): the pid that reloads
# the models folder on SIGHUP.
SERVER_PID_ENV = "TAGSERVE_SERVER_PID"


class Settings(BaseSettings):
    """Every knob the service has; nothing else reads the environment."""

    model_config = SettingsConfigDict(env_prefix="TAGSERVE_", extra="ignore")

    models_dir: Path = Field(SHIPPED_MODELS_DIR, description="folder of model artifact directories")
    models: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="model names to load, comma-separated or a JSON list (default: every one "
        "in models_dir)",
    )
    default_model: str = Field("ner", description="model used when a request names none")
    max_batch_size: int = Field(
        32, ge=1, le=4096, description="sentences per model batch; 1 turns batching off"
    )
    max_wait_ms: float = Field(
        0.0,
        ge=0,
        le=1000,
        description="extra wait for a batch to fill; 0 = a batch is whatever queued while the "
        "model was busy",
    )
    max_queue: int = Field(4096, ge=1, description="sentences waiting for the model before 503")
    max_inflight: int = Field(
        512,
        ge=1,
        le=100_000,
        description="POST /tag requests one HTTP worker holds at once; more get 503 with "
        "Retry-After before their body is parsed",
    )
    overload_hold_s: float = Field(
        1.0,
        ge=0,
        le=30,
        description="a POST /tag that does not fit (TAGSERVE_MAX_INFLIGHT, TAGSERVE_MAX_QUEUE) "
        "waits this long, first come first served and costing no CPU, for room before its 503: "
        "clients that resend at once are paced by the model instead of by refusals; 0 = refuse "
        "at once",
    )
    http_nice: int = Field(
        10,
        ge=0,
        le=19,
        description="with several HTTP workers: the nice value each HTTP worker takes at "
        "start, so that under overload the kernel gives the model workers (nice 0) the cores "
        "first; 0 = same priority",
    )
    max_text_chars: int = Field(100_000, ge=1, description="characters per text")
    max_texts: int = Field(128, ge=1, description="texts (or token lists) per request")
    max_tokens: int = Field(20_000, ge=1, description="tokens per request after tokenization")
    max_body_bytes: int = Field(2_000_000, ge=1024, description="request body size")
    max_sentence_tokens: int = Field(
        MAX_SENTENCE_TOKENS, ge=8, description="longer sentences are tagged in pieces"
    )
    workers: int | None = Field(
        None,
        ge=1,
        le=256,
        description="HTTP worker processes (`tagserve serve --workers`); default: the cores "
        "this process may use (CPU affinity, capped by a cgroup CPU quota)",
    )
    torch_threads: int = Field(
        1, ge=1, le=256, description="torch intra-op threads for the model worker"
    )
    device: Literal["cpu", "cuda"] = Field(
        "cpu", description="models run on this device; cuda needs a GPU"
    )
    precision: Annotated[dict[str, Precision], NoDecode] = Field(
        default_factory=dict,
        description="per-model serving precision overriding the model card's (float32 unless "
        "the card says int8), as `ner-fast=int8,slots=float32` or a JSON object; `*` names "
        "every model. int8 quantizes the recurrent encoder and output layer at load (CPU only)",
    )
    model_process: bool = Field(
        True,
        description="serve each model from a worker process of `tagserve serve` (its own GIL, "
        "so model work and HTTP work do not wait on each other); false = a thread (one HTTP "
        "worker only: several always share model worker processes)",
    )
    batch_timeout_s: float = Field(
        5.0,
        gt=0,
        le=3600,
        description="a model worker that takes longer on one batch is killed and replaced, "
        "and the batch's requests are tried again one by one: a request that alone overruns "
        "it gets 503 with code model_timeout and no Retry-After. Keep it well under the "
        "client's and the proxy's timeouts (30 s), so that the 503 reaches the client",
    )
    heartbeat_timeout_s: float = Field(
        30.0,
        ge=1,
        le=3600,
        description="with several HTTP workers: one whose event loop has not ticked for this "
        "long (a request stuck in CPU work on the loop, a deadlock) is killed and replaced",
    )
    cache_words: int = Field(
        CACHE_WORDS,
        ge=0,
        le=2_000_000,
        description="words whose input vectors each model memoises (0 = off); about 0.5 KB a word",
    )
    drain_timeout_s: float = Field(
        10.0, ge=0, description="graceful-shutdown wait for in-flight work"
    )
    drain_notice_s: float = Field(
        1.0,
        ge=0,
        le=60,
        description="after SIGTERM, keep serving with /health = 503 this long (load balancers "
        "see it and stop routing) before closing the listener",
    )
    keep_alive_s: int = Field(
        75,
        ge=1,
        le=3600,
        description="how long an idle client connection is kept open; keep it longer than the "
        "idle timeout of any proxy or client in front (nginx 60 s, most load balancers 60 s, "
        "httpx 5 s), so that the client, never the server, closes an idle connection",
    )
    header_timeout_s: float = Field(
        10.0,
        gt=0,
        le=3600,
        description="a client must send a request's headers within this long of connecting "
        "(or of its previous answer), else 408 and the connection closes (nginx's "
        "client_header_timeout)",
    )
    body_timeout_s: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="and the body within this long of the headers, else 408 (nginx's "
        "client_body_timeout)",
    )
    max_connections: int = Field(
        2048,
        ge=1,
        description="open connections (or requests in progress) per HTTP worker; past it a "
        "new request gets 503 before any work",
    )
    api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="keys that /tag, /models and /metrics require as `Authorization: Bearer "
        "KEY` (comma-separated or a JSON list); empty = open",
        repr=False,
    )
    api_keys_file: Path | None = Field(
        None,
        description="a file with one key per line (a mounted Docker or Kubernetes secret), "
        "added to api_keys",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="CORS allow-list, comma-separated or a JSON list; empty = off",
    )
    log_level: Literal["critical", "error", "warning", "info", "debug"] = Field("info")
    labelstudio_url: str | None = Field(
        None,
        description="Label Studio's URL (http://host:8080): training from Label Studio "
        "fetches the project's export from its API",
    )
    labelstudio_token: str | None = Field(
        None,
        description="a Label Studio API token (legacy token or personal access token) that "
        "may export the projects to train from",
        repr=False,
    )
    labelstudio_model_name: str = Field(
        "ls-project-{project}",
        description="the name of the model trained from a Label Studio project, `{project}` "
        "being its id; the directory it gets in models_dir",
    )
    labelstudio_train_args: str = Field(
        "",
        description="more `tagserve train` arguments for training from Label Studio, as a "
        "shell would split them (`--tokenizer atis --init slots`)",
    )
    labelstudio_train_every: int = Field(
        0,
        ge=0,
        description="start training after this many ANNOTATION_CREATED/ANNOTATION_UPDATED "
        "webhook events of a project; 0 = only on START_TRAINING",
    )
    labelstudio_train_timeout_s: float = Field(
        3600.0, gt=0, description="a training job that runs longer is stopped and fails"
    )
    labelstudio_jobs_dir: Path | None = Field(
        None,
        description="training jobs' folders (export, log, state); default: "
        "models_dir/.labelstudio-jobs",
    )

    @field_validator("device")
    @classmethod
    def _device_available(cls, value: str) -> str:
        if value == "cuda":
            import torch

            if not torch.cuda.is_available():
                # A custom error, so the message is not prefixed with pydantic's "Value error, ".
                raise PydanticCustomError(
                    "device_unavailable",
                    "cuda requested but no CUDA device is available (torch {version})",
                    {"version": torch.__version__},
                )
        return value

    @field_validator("models", "cors_origins", "api_keys", mode="before")
    @classmethod
    def _split_list(cls, value: object) -> object:
        """``a,b`` or ``["a", "b"]``: the comma form is what people type into an environment
        variable, the JSON form is what pydantic-settings reads by default."""
        if not isinstance(value, str):
            return value
        text = value.strip()
        if text.startswith("["):
            try:
                return json.loads(text)
            except json.JSONDecodeError as error:
                raise PydanticCustomError(
                    "json_list", "not a JSON list ({reason})", {"reason": error.msg}
                ) from None
        return text.split(",")

    @field_validator("models", "cors_origins", "api_keys")
    @classmethod
    def _strip_items(cls, value: list[str]) -> list[str]:
        items = [item.strip() for item in value]
        if any(not item for item in items):
            raise PydanticCustomError("empty_item", "an empty entry in the list")
        return items

    @field_validator("precision", mode="before")
    @classmethod
    def _split_mapping(cls, value: object) -> object:
        """``ner=int8,slots=float32`` or ``{"ner": "int8"}``."""
        if not isinstance(value, str):
            return value
        text = value.strip()
        if text.startswith("{"):
            try:
                return json.loads(text)
            except json.JSONDecodeError as error:
                raise PydanticCustomError(
                    "json_object", "not a JSON object ({reason})", {"reason": error.msg}
                ) from None
        pairs = {}
        for item in filter(None, (part.strip() for part in text.split(","))):
            name, sep, precision = item.partition("=")
            if not sep or not name.strip():
                raise PydanticCustomError(
                    "precision_pair", "expected MODEL=PRECISION pairs, got {item!r}", {"item": item}
                )
            pairs[name.strip()] = precision.strip()
        return pairs

    def precision_for(self, name: str, card_precision: Precision) -> Precision:
        """The precision model ``name`` is served in: this setting's, else the card's."""
        return self.precision.get(name, self.precision.get("*", card_precision))

    @field_validator("api_keys_file")
    @classmethod
    def _keys_file_readable(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"api_keys_file {value} is not a readable file")
        return value

    def all_api_keys(self) -> list[str]:
        """The keys from ``api_keys`` and ``api_keys_file`` (blank lines and # comments
        skipped)."""
        keys = list(self.api_keys)
        if self.api_keys_file is not None:
            for line in self.api_keys_file.read_text(encoding="utf-8").splitlines():
                if line.strip() and not line.lstrip().startswith("#"):
                    keys.append(line.strip())
        return keys

    @field_validator("models_dir")
    @classmethod
    def _models_dir_exists(cls, value: Path) -> Path:
        if not value.is_dir():
            raise ValueError(f"models_dir {value} is not a directory")
        return value

    @field_validator("labelstudio_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        url = value.strip().rstrip("/")
        if not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", url):
            raise PydanticCustomError(
                "http_url", "expected http://HOST[:PORT][/PATH], got {url!r}", {"url": url}
            )
        return url

    @field_validator("labelstudio_model_name")
    @classmethod
    def _model_name_template(cls, value: str) -> str:
        """The name must make a visible directory name for every project id."""
        example = value.replace("{project}", "12345")
        if not _MODEL_NAME.fullmatch(example):
            raise PydanticCustomError(
                "model_name",
                "{value!r} does not make a model name: letters, digits, '.', '_' and '-' "
                "(not first), at most 64, with {{project}} for the project's id",
                {"value": value},
            )
        return value

    @field_validator("labelstudio_train_args")
    @classmethod
    def _train_args(cls, value: str) -> str:
        """Shell-split here already, and none of the arguments the job itself sets."""
        try:
            arguments = shlex.split(value)
        except ValueError as error:
            raise PydanticCustomError(
                "train_args",
                "cannot split {value!r}: {reason}",
                {"value": value, "reason": str(error)},
            ) from None
        owned = [a for a in arguments if a.split("=", 1)[0] in LABELSTUDIO_JOB_FLAGS]
        if owned:
            raise PydanticCustomError(
                "train_args",
                "{flag} is set by the training job itself (it sets {flags})",
                {"flag": owned[0], "flags": ", ".join(LABELSTUDIO_JOB_FLAGS)},
            )
        return value

    def labelstudio_jobs(self) -> Path:
        """The folder of training jobs from Label Studio (hidden in models_dir by default:
        the reload scan skips it)."""
        return self.labelstudio_jobs_dir or self.models_dir / ".labelstudio-jobs"


def server_pid() -> int | None:
    """The ``tagserve serve`` process this one runs under (it reloads the models folder on
    SIGHUP), or None outside ``tagserve serve`` (tests, another ASGI server)."""
    value = os.environ.get(SERVER_PID_ENV, "")
    return int(value) if value.isdigit() else None


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
