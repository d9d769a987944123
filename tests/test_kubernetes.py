"""deploy/kubernetes: every manifest valid against the Kubernetes schemas (offline, strict, with
the schemas kubernetes-validate bundles), and the numbers that must agree across manifests and
with the server (shutdown budget, probes, workers and CPU, memory, disruption budget, image,
ports, labels, settings) agreeing."""

from __future__ import annotations

import copy
import math
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from tagserve.service.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
MANIFESTS = ROOT / "deploy" / "kubernetes"
# The Kubernetes versions the manifests are validated against: the one place they are pinned.
# The oldest is the first with the preStop `sleep` action on by default (beta in 1.30; the
# PodDisruptionBudget's unhealthyPodEvictionPolicy is on by default since 1.27); the newest
# is the first where both are GA (1.34 and 1.31).
KUBERNETES_VERSION = "1.30.0"
KUBERNETES_VERSIONS = (KUBERNETES_VERSION, "1.34.0")
PORT = 8000  # what `tagserve serve --port` listens on in the container
# Seconds from the end of the drain to the process's exit (the model workers stopped, the
# processes gone). Measured: SIGTERM to exit of `tagserve serve --workers 2` with both models,
# idle, minus the drain notice: 3.0, 5.6, 4.0, 4.8 and 4.1 s (during a docker build), then
# 2.3 and 2.1 s, on a loaded 2-core machine; allowed twice the worst, rounded up.
# deployment.yaml's budget comment uses the same figure.
TEARDOWN_S = 10
# PSS of `tagserve serve --workers 2` with both models, the highest of 8 measurements
# (746-788 MB; with ner-fast as a third model, 775 MB in 3 runs of bench.cold_start), and of
# one model worker process (the larger model's, 246 MB): the memory limit must hold both plus
# a replacement model worker.
MEASURED_PSS_MB = 788
MODEL_WORKER_PSS_MB = 246


@pytest.fixture(scope="module")
def validator() -> ModuleType:
    """kubernetes_validate (the lint extra); skipped when missing, but fails under CI."""
    try:
        import kubernetes_validate
    except ImportError:
        message = "kubernetes-validate is not installed (bash scripts/install.sh dev)"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return kubernetes_validate


def _kustomization() -> dict[str, Any]:
    return yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text(encoding="utf-8"))


def _resource_files() -> list[str]:
    return list(_kustomization()["resources"])


def _documents(name: str) -> list[dict[str, Any]]:
    text = (MANIFESTS / name).read_text(encoding="utf-8")
    return [doc for doc in yaml.safe_load_all(text) if doc is not None]


def _all_documents() -> list[dict[str, Any]]:
    return [doc for name in _resource_files() for doc in _documents(name)]


def _one(kind: str) -> dict[str, Any]:
    found = [doc for doc in _all_documents() if doc["kind"] == kind]
    assert len(found) == 1, f"expected one {kind} among the kustomization's resources"
    return found[0]


def _container() -> dict[str, Any]:
    (container,) = _one("Deployment")["spec"]["template"]["spec"]["containers"]
    return container


def _config() -> dict[str, str]:
    data: dict[str, str] = _one("ConfigMap")["data"]
    return data


def _env() -> dict[str, str]:
    return {e["name"]: e["value"] for e in _container().get("env", []) if "value" in e}


def _setting(name: str) -> float:
    """A setting's value as the pods see it: the container's env, else the ConfigMap's, else
    the server's default."""
    key = f"TAGSERVE_{name.upper()}"
    value = _env().get(key, _config().get(key))
    return float(value) if value is not None else float(Settings.model_fields[name].default)


def _cpu(quantity: str | int) -> float:
    text = str(quantity)
    return int(text[:-1]) / 1000 if text.endswith("m") else float(text)


def _memory_bytes(quantity: str) -> int:
    match = re.fullmatch(r"(\d+)(Ki|Mi|Gi|k|M|G)?", quantity)
    assert match, quantity
    unit = {None: 1, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "k": 10**3, "M": 10**6, "G": 10**9}
    return int(match[1]) * unit[match[2]]


def _prestop_sleep() -> float:
    return float(_container()["lifecycle"]["preStop"]["sleep"]["seconds"])


def _port_number(port: int | str) -> int:
    """A probe's or Service's port: a number, or the name of one of the container's ports."""
    if isinstance(port, int):
        return port
    numbers = [p["containerPort"] for p in _container()["ports"] if p["name"] == port]
    assert numbers, f"no container port named {port!r}"
    return int(numbers[0])


# ---- the manifests are what kubectl apply -k applies, and each one is valid ----


def test_kustomization_lists_every_manifest_in_the_folder() -> None:
    kustomization = _kustomization()
    assert kustomization["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    assert kustomization["kind"] == "Kustomization"
    listed = _resource_files()
    assert len(listed) == len(set(listed)), f"listed twice: {listed}"
    on_disk = sorted(p.name for p in MANIFESTS.iterdir() if p.name != "kustomization.yaml")
    assert sorted(listed) == on_disk, (
        "every file in deploy/kubernetes must be a resource of kustomization.yaml "
        f"(listed {sorted(listed)}, present {on_disk})"
    )


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("name", _resource_files())
def test_manifest_is_valid_against_the_kubernetes_schemas(
    validator: ModuleType, name: str, version: str
) -> None:
    documents = _documents(name)
    assert documents, f"{name} holds no document"
    for document in documents:
        # A kind without a schema raises SchemaNotFoundError: a failure here, where the CLI
        # would only warn.
        validated = validator.validate(document, version, strict=True)
        assert validated == version.rsplit(".", 1)[0]
        assert "namespace" not in document["metadata"], "the namespace is kubectl's to choose"


def test_the_deployment_needs_the_preStop_sleep_action(validator: ModuleType) -> None:
    """Strict validation is what holds the manifests to the versions above: against 1.28,
    whose schema has no preStop `sleep`, the Deployment is rejected."""
    with pytest.raises(validator.ValidationError):
        validator.validate(_one("Deployment"), "1.28.0", strict=True)


def test_the_command_line_validator_passes_every_manifest(validator: ModuleType) -> None:
    """The command CI and README use: kubernetes-validate --strict (offline, bundled schemas)."""
    files = [str(MANIFESTS / name) for name in _resource_files()]
    options = ["--strict", "--quiet", "--kubernetes-version", KUBERNETES_VERSION]
    run = subprocess.run(
        [sys.executable, "-m", "kubernetes_validate", *options, *files],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "WARN" not in run.stdout, run.stdout  # a kind it has no schema for


def _typo_field(deployment: dict[str, Any]) -> None:
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbes"] = {}


def _port_as_text(deployment: dict[str, Any]) -> None:
    deployment["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "8000"


def _no_container_name(deployment: dict[str, Any]) -> None:
    del deployment["spec"]["template"]["spec"]["containers"][0]["name"]


def _bad_probe_handler(deployment: dict[str, Any]) -> None:
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["tcpSocket"] = {
        "port": "http",
        "path": "/health",
    }


def _bad_sleep(deployment: dict[str, Any]) -> None:
    lifecycle = deployment["spec"]["template"]["spec"]["containers"][0]["lifecycle"]
    lifecycle["preStop"]["sleep"] = {"seconds": "5s"}


BREAKAGES = [_typo_field, _port_as_text, _no_container_name, _bad_probe_handler, _bad_sleep]


@pytest.mark.parametrize("break_it", BREAKAGES)
def test_a_broken_manifest_is_rejected(validator: ModuleType, break_it: Any) -> None:
    broken = copy.deepcopy(_one("Deployment"))
    break_it(broken)
    with pytest.raises(validator.ValidationError):
        validator.validate(broken, KUBERNETES_VERSION, strict=True)


def test_an_unknown_kind_is_rejected(validator: ModuleType) -> None:
    document = {"apiVersion": "apps/v1", "kind": "Deploymnet", "metadata": {"name": "x"}}
    with pytest.raises(validator.SchemaNotFoundError):
        validator.validate(document, KUBERNETES_VERSION, strict=True)


# ---- what the schemas cannot check ----


def test_prestop_sleep_covers_endpoint_removal() -> None:
    """Endpoints are removed at the same time as preStop runs (kubernetes#67592): the pod
    keeps serving, undisturbed, while kube-proxy and ingress controllers catch up."""
    assert set(_container()["lifecycle"]["preStop"]) == {"sleep"}, "the native sleep action"
    assert 3 <= _prestop_sleep() <= 15


def _budget() -> dict[str, float]:
    """Each step of a pod's shutdown and the most it may take (deployment.yaml's comment)."""
    drain = _setting("drain_timeout_s")
    return {
        "preStop sleep": _prestop_sleep(),
        "drain notice": _setting("drain_notice_s"),
        "in-flight requests": drain,
        # api/app.py's lifespan drains every model's batcher at once, up to drain_timeout_s.
        "batcher drains": drain,
        "teardown": TEARDOWN_S,
    }


def test_grace_period_covers_the_whole_shutdown_budget() -> None:
    needed = sum(_budget().values())
    grace = _one("Deployment")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace >= needed, f"terminationGracePeriodSeconds {grace} < {needed} ({_budget()})"
    assert grace <= needed + 15, "a grace period far above the budget only delays stuck pods"
    # The budget is written out in deployment.yaml: its total and grace period are these.
    text = (MANIFESTS / "deployment.yaml").read_text(encoding="utf-8")
    stated = re.search(r"Total (\d+) s; terminationGracePeriodSeconds (\d+) s", text)
    assert stated, "deployment.yaml: the shutdown budget's 'Total N s' line is missing"
    assert (int(stated[1]), int(stated[2])) == (math.ceil(needed), grace), (
        f"deployment.yaml's budget comment is stale: computed {needed} s, grace {grace} s"
    )


def test_probes_use_livez_for_liveness_and_health_for_readiness() -> None:
    container = _container()
    for probe in ("startupProbe", "readinessProbe"):
        get = container[probe]["httpGet"]
        assert get["path"] == "/health", probe
        assert _port_number(get["port"]) == PORT, probe
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 60, "model loading time"
    readiness = container["readinessProbe"]
    assert readiness["failureThreshold"] >= 3, "one slow /health under load must not unready it"
    assert readiness["timeoutSeconds"] >= 2
    # /livez: 200 whenever the event loop runs (also while draining or replacing a model
    # worker, when /health is 503); a TCP check would pass a stuck event loop.
    liveness = container["livenessProbe"]
    assert set(liveness) & {"httpGet", "tcpSocket", "exec", "grpc"} == {"httpGet"}
    assert liveness["httpGet"]["path"] == "/livez"
    assert _port_number(liveness["httpGet"]["port"]) == PORT
    assert liveness["failureThreshold"] >= 3
    assert liveness["periodSeconds"] * liveness["failureThreshold"] >= 30


def test_workers_equal_the_cpu_limit() -> None:
    resources = _container()["resources"]
    workers = _env().get("TAGSERVE_WORKERS")
    assert workers is not None, "set TAGSERVE_WORKERS: unset, it follows the node without a limit"
    assert int(workers) == _cpu(resources["limits"]["cpu"])


def test_pod_is_guaranteed_and_sized_from_the_measured_memory() -> None:
    resources = _container()["resources"]
    for kind in ("cpu", "memory"):
        assert resources["requests"][kind] == resources["limits"][kind], (
            f"{kind}: request != limit (Guaranteed QoS needs them equal)"
        )
    limit = _memory_bytes(resources["limits"]["memory"])
    assert limit >= (MEASURED_PSS_MB + MODEL_WORKER_PSS_MB) * 10**6 * 1.2
    assert limit <= 2 * MEASURED_PSS_MB * 10**6, "far above what was measured"


def test_disruption_budget_evicts_one_pod_at_a_time() -> None:
    spec = _one("PodDisruptionBudget")["spec"]
    assert spec["maxUnavailable"] == 1
    assert "minAvailable" not in spec
    assert spec["unhealthyPodEvictionPolicy"] == "AlwaysAllow"


def test_image_is_pinned_by_kustomize() -> None:
    """The pods' image is named once, with a fixed tag, in kustomization.yaml: the same tag
    docker-compose.yml builds, the project's version."""
    name = _container()["image"]
    assert ":" not in name and "@" not in name, "the tag belongs in kustomization.yaml"
    assert "imagePullPolicy" not in _container(), "the default for a fixed tag: IfNotPresent"
    (entry,) = [e for e in _kustomization()["images"] if e["name"] == name]
    tag = entry.get("newTag")
    assert tag or entry.get("digest"), "kustomization.yaml pins no tag or digest"
    assert tag != "latest"
    version = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert tag == version["version"]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    assert compose["services"]["tagserve"]["image"] == f"{name}:{tag}"


def test_selectors_match_the_pods() -> None:
    deployment = _one("Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]

    def selects(selector: dict[str, str]) -> bool:
        return bool(selector) and selector.items() <= pod_labels.items()

    assert selects(deployment["spec"]["selector"]["matchLabels"])
    service = _one("Service")
    assert service["spec"]["type"] == "ClusterIP"
    assert selects(service["spec"]["selector"]), "the Service selects no pod of the Deployment"
    (port,) = service["spec"]["ports"]
    assert (port["port"], _port_number(port["targetPort"])) == (80, PORT)
    assert selects(_one("PodDisruptionBudget")["spec"]["selector"]["matchLabels"])
    target = _one("HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
    pdb = _one("PodDisruptionBudget")["spec"]
    assert pdb["maxUnavailable"] < _one("HorizontalPodAutoscaler")["spec"]["minReplicas"]


def test_configmap_holds_real_settings_with_valid_values() -> None:
    config = _config()
    fields = {}
    for key, value in config.items():
        assert key.startswith("TAGSERVE_"), key
        name = key.removeprefix("TAGSERVE_").lower()
        assert name in Settings.model_fields, f"{key} is not a tagserve setting (ignored)"
        fields[name] = value
    Settings(**fields)  # each value parses and is within its limits (test_deploy_defaults.py
    # checks that each is a default or a deliberate override)
    envs = _container()["envFrom"]
    assert {"configMapRef": {"name": _one("ConfigMap")["metadata"]["name"]}} in envs


def test_pod_is_locked_down_and_sized() -> None:
    spec = _one("Deployment")["spec"]["template"]["spec"]
    container = _container()
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == 10001
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= container["resources"][kind].keys(), kind


def test_api_key_secret_is_optional_read_only_and_found_by_the_server(tmp_path: Path) -> None:
    spec = _one("Deployment")["spec"]["template"]["spec"]
    container = _container()
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    keys_file = env["TAGSERVE_API_KEYS_FILE"]
    (volume,) = [v for v in spec["volumes"] if "secret" in v]
    assert volume["secret"]["optional"] is True, "the pods must start without the Secret"
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
    assert mount["readOnly"] is True
    paths = [f"{mount['mountPath']}/{item['path']}" for item in volume["secret"]["items"]]
    assert keys_file in paths, "TAGSERVE_API_KEYS_FILE must name the mounted key file"

    # The container's command drops the variable when the optional Secret is absent (the
    # server refuses a missing keys file) and keeps it when present; run it with a stand-in
    # tagserve that prints what it got.
    command = container["command"]
    assert command[:2] == ["sh", "-c"]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "tagserve"
    fake.write_text('#!/bin/sh\necho "${TAGSERVE_API_KEYS_FILE:-unset} $*"\n', encoding="utf-8")
    fake.chmod(0o755)
    present = tmp_path / "keys"
    present.write_text("k1\n", encoding="utf-8")
    for path, expected in ((tmp_path / "absent", "unset"), (present, str(present))):
        run = subprocess.run(
            command,
            env={"PATH": f"{bin_dir}:/usr/bin:/bin", "TAGSERVE_API_KEYS_FILE": str(path)},
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        assert run.stdout.split() == [expected, "serve", "--host", "0.0.0.0", "--port", str(PORT)]
