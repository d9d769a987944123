"""deploy/kubernetes: every manifest valid against the Kubernetes schemas (offline, strict, with
the schemas kubernetes-validate bundles), and the numbers that must agree across manifests
(drain timing, probes, ports, labels, settings) agreeing."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from tagserve.service.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
MANIFESTS = ROOT / "deploy" / "kubernetes"
# The Kubernetes version the manifests are validated against: the one place it is pinned.
KUBERNETES_VERSION = "1.30.0"
PORT = 8000  # what `tagserve serve --port` listens on in the container


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


def _setting(name: str) -> float:
    """A setting's value as the pods see it: the ConfigMap's, else the server's default."""
    value = _config().get(f"TAGSERVE_{name.upper()}")
    return float(value) if value is not None else float(Settings.model_fields[name].default)


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


@pytest.mark.parametrize("name", _resource_files())
def test_manifest_is_valid_against_the_kubernetes_schemas(validator: ModuleType, name: str) -> None:
    documents = _documents(name)
    assert documents, f"{name} holds no document"
    for document in documents:
        # A kind without a schema raises SchemaNotFoundError: a failure here, where the CLI
        # would only warn.
        validated = validator.validate(document, KUBERNETES_VERSION, strict=True)
        assert validated == KUBERNETES_VERSION.rsplit(".", 1)[0]
        assert "namespace" not in document["metadata"], "the namespace is kubectl's to choose"


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


BREAKAGES = [_typo_field, _port_as_text, _no_container_name, _bad_probe_handler]


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


def test_prestop_sleeps_for_the_drain_notice() -> None:
    assert _container()["lifecycle"]["preStop"]["exec"]["command"][0] == "sleep"
    sleep = float(_container()["lifecycle"]["preStop"]["exec"]["command"][1])
    assert "TAGSERVE_DRAIN_NOTICE_S" in _config(), "set the drain notice in the ConfigMap"
    assert sleep == _setting("drain_notice_s"), "preStop sleep != TAGSERVE_DRAIN_NOTICE_S"


def test_grace_period_covers_prestop_notice_and_drain() -> None:
    sleep = float(_container()["lifecycle"]["preStop"]["exec"]["command"][1])
    needed = sleep + _setting("drain_notice_s") + _setting("drain_timeout_s")
    grace = _one("Deployment")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace >= needed, f"terminationGracePeriodSeconds {grace} < {needed}"


def test_probes_use_health_on_the_server_port() -> None:
    container = _container()
    for probe in ("startupProbe", "readinessProbe"):
        get = container[probe]["httpGet"]
        assert get["path"] == "/health", probe
        assert _port_number(get["port"]) == PORT, probe
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 60, "model loading time"


def test_liveness_outlasts_the_drain() -> None:
    """/health is 503 while draining, and the listener is closed for the drain timeout: the
    liveness probe must see neither as death."""
    liveness = _container()["livenessProbe"]
    assert liveness.get("httpGet", {}).get("path") != "/health"
    handler = liveness.get("tcpSocket") or liveness.get("httpGet")
    assert handler is not None
    assert _port_number(handler["port"]) == PORT
    tolerated = liveness["periodSeconds"] * liveness["failureThreshold"]
    assert tolerated > _setting("drain_timeout_s")


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
    assert pdb["minAvailable"] < _one("HorizontalPodAutoscaler")["spec"]["minReplicas"]


def test_configmap_holds_real_settings_with_valid_values() -> None:
    config = _config()
    fields = {}
    for key, value in config.items():
        assert key.startswith("TAGSERVE_"), key
        name = key.removeprefix("TAGSERVE_").lower()
        assert name in Settings.model_fields, f"{key} is not a tagserve setting (ignored)"
        fields[name] = value
    Settings(**fields)  # each value parses and is within its limits
    envs = _container()["envFrom"]
    assert {"configMapRef": {"name": _one("ConfigMap")["metadata"]["name"]}} in envs


def test_pod_is_locked_down_and_sized() -> None:
    spec = _one("Deployment")["spec"]["template"]["spec"]
    container = _container()
    assert container["image"] == "tagserve:latest"
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
