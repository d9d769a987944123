"""Defaults are stated once, in tagserve/service/settings.py: every ``TAGSERVE_*`` value that the
Dockerfile, docker-compose.yml and deploy/kubernetes/*.yaml set is a real setting, and it either
equals that setting's default (so a default changed in settings.py cannot leave a stale copy
behind unnoticed) or is listed in DELIBERATE with the reason it differs.

Also: the timeouts in front of the service leave the batch timeout room (a stuck batch is
answered by the app, not by the proxy or the client), nginx never replays a POST, and nginx's
body limit lets the app's own 413 answer."""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import TypeAdapter

from tagserve.client import TagserveClient
from tagserve.service.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
NGINX = ROOT / "deploy" / "nginx.conf"

# Values that differ from the default on purpose, and why (keep it short: the file that sets
# one says more next to it).
DELIBERATE = {
    # Default: the cores the process may use. A pod states it, equal to its CPU limit
    # (tests/test_kubernetes.py), so a pod without a limit does not start one per node core.
    "TAGSERVE_WORKERS": "deploy/kubernetes/deployment.yaml",
    # Default: none. The mounted (optional) API-key Secret.
    "TAGSERVE_API_KEYS_FILE": "deploy/kubernetes/deployment.yaml",
}

_COMPOSE_DEFAULT = re.compile(r"^\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::?-(?P<default>.*))?\}$")


def _dockerfile_env() -> list[tuple[str, str, str]]:
    """(file, name, value) for every ENV and ARG assignment of the Dockerfile."""
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    logical = re.sub(r"\\\n", " ", text)  # continuation lines joined
    found = []
    for line in logical.splitlines():
        words = line.split(maxsplit=1)
        if len(words) < 2 or words[0].upper() not in ("ENV", "ARG"):
            continue
        body = words[1]
        pairs = re.findall(r'([A-Za-z_][A-Za-z0-9_]*)=("[^"]*"|\S*)', body)
        if not pairs and body.split()[0]:  # ENV NAME value (the old form)
            name, _, value = body.partition(" ")
            pairs = [(name, value.strip())]
        found += [("Dockerfile", name, value.strip('"')) for name, value in pairs]
    return found


def _compose_env() -> list[tuple[str, str, str]]:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    found = []
    for service_name, service in compose["services"].items():
        environment = service.get("environment") or {}
        if isinstance(environment, list):
            environment = dict(item.partition("=")[::2] for item in environment)
        for name, value in environment.items():
            text = "" if value is None else str(value)
            match = _COMPOSE_DEFAULT.match(text)
            if match:  # ${NAME:-default}: what the container gets unless the shell sets it
                text = match["default"] or ""
            found.append((f"docker-compose.yml ({service_name})", name, text))
    return found


def _kubernetes_env() -> list[tuple[str, str, str]]:
    found = []
    for path in sorted((ROOT / "deploy" / "kubernetes").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if not doc:
                continue
            where = f"deploy/kubernetes/{path.name}"
            if doc.get("kind") == "ConfigMap":
                found += [(where, k, str(v)) for k, v in (doc.get("data") or {}).items()]
            template = doc.get("spec", {}).get("template", {}).get("spec", {})
            for container in template.get("containers", []):
                for item in container.get("env", []):
                    assert "value" in item, f"{where}: {item['name']} must be a plain value"
                    found.append((where, item["name"], str(item["value"])))
    return found


def _all_settings() -> list[tuple[str, str, str]]:
    return [
        entry
        for entry in _dockerfile_env() + _compose_env() + _kubernetes_env()
        if entry[1].startswith("TAGSERVE_")
    ]


def _default(name: str) -> Any:
    field = Settings.model_fields[name]
    return field.default_factory() if field.default_factory else field.default  # type: ignore[call-arg]


def test_the_parsers_see_the_files() -> None:
    """The test below would pass vacuously if the parsers found nothing: they find the
    deliberate values and the compose/Kubernetes settings namespace."""
    names = {name for _, name, _ in _all_settings()}
    assert {"TAGSERVE_WORKERS", "TAGSERVE_API_KEYS_FILE"} <= names
    assert any(name == "PYTHON_IMAGE" for _, name, _ in _dockerfile_env())


@pytest.mark.parametrize(
    ("where", "name", "value"), _all_settings(), ids=lambda v: str(v).replace(" ", "")
)
def test_each_value_is_a_real_setting_and_a_default_or_deliberate(
    where: str, name: str, value: str
) -> None:
    field_name = name.removeprefix("TAGSERVE_").lower()
    assert field_name in Settings.model_fields, (
        f"{where}: {name} is not a tagserve setting (the server would silently ignore it)"
    )
    if name in DELIBERATE:
        return
    field = Settings.model_fields[field_name]
    parsed = TypeAdapter(field.annotation).validate_python(value)
    assert parsed == _default(field_name), (
        f"{where}: {name}={value} differs from the default in settings.py "
        f"({_default(field_name)!r}); if that is intended, add it to DELIBERATE in "
        "tests/test_deploy_defaults.py with the reason (and a comment where it is set)"
    )


def test_deliberate_overrides_are_still_set_somewhere() -> None:
    names = {name for _, name, _ in _all_settings()}
    stale = sorted(set(DELIBERATE) - names)
    assert not stale, f"DELIBERATE lists values no deployment file sets any more: {stale}"


def test_offline_tagging_uses_the_servers_defaults() -> None:
    """`tagserve tag` (text/offline.py) and the server read the same two defaults from
    text/limits.py: stated once, so they cannot drift apart."""
    from tagserve.text import limits, offline

    assert _default("max_sentence_tokens") == limits.MAX_SENTENCE_TOKENS
    assert _default("cache_words") == limits.CACHE_WORDS
    assert (offline.MAX_SENTENCE_TOKENS, offline.CACHE_WORDS) == (
        limits.MAX_SENTENCE_TOKENS,
        limits.CACHE_WORDS,
    )


# ---- the timeouts and limits in front of the service ----


def _nginx_directive(name: str) -> list[str]:
    text = NGINX.read_text(encoding="utf-8")
    lines = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    return [
        line.removeprefix(name).strip().rstrip(";").strip()
        for line in lines
        if line.startswith(name + " ")
    ]


def _seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+)(ms|s|m)?", value)
    assert match, value
    return int(match[1]) * {"ms": 0.001, "s": 1, "m": 60, None: 1}[match[2]]


def _bytes(value: str) -> int:
    match = re.fullmatch(r"(\d+)([kKmMgG])?", value)
    assert match, value
    return (
        int(match[1])
        * {None: 1, "k": 1024, "m": 1024**2, "g": 1024**3}[match[2] and match[2].lower()]
    )


def test_the_batch_timeout_fires_well_before_the_proxy_and_the_client_give_up() -> None:
    """A request that hangs a model must get the app's 503 (code model_timeout), not a
    proxy's 504 or a client-side timeout that a retry layer would replay: the batch timeout
    is at most half of nginx's read timeout and of the client's default timeout."""
    batch = float(_default("batch_timeout_s"))
    (read_timeout,) = _nginx_directive("proxy_read_timeout")
    client = inspect.signature(TagserveClient).parameters["timeout"].default
    assert 2 * batch <= _seconds(read_timeout), (batch, read_timeout)
    assert 2 * batch <= client, (batch, client)
    # And nginx gives up on all its tries no sooner than on one.
    (overall,) = _nginx_directive("proxy_next_upstream_timeout")
    assert _seconds(overall) >= _seconds(read_timeout)


def test_nginx_never_replays_a_post_that_reached_a_replica() -> None:
    (retry_on,) = _nginx_directive("proxy_next_upstream")
    assert "non_idempotent" not in retry_on.split(), (
        "a POST answered 503 (model_timeout) or timed out would be replayed on the next replica"
    )
    assert "error" in retry_on.split()


def test_nginx_body_limit_leaves_the_413_to_the_app() -> None:
    (limit,) = _nginx_directive("client_max_body_size")
    app_limit = _default("max_body_bytes")
    assert _bytes(limit) >= app_limit * 1.25, (
        f"client_max_body_size {limit} is not clearly above TAGSERVE_MAX_BODY_BYTES "
        f"({app_limit}): a body just over the app's limit would get nginx's 413"
    )
    assert _bytes(limit) <= app_limit * 4, "nginx would buffer far more than the app accepts"
