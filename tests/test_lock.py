"""The lock (requirements/*.txt) and pyproject.toml agree: same direct dependencies, every
pin inside its range, one version per package across groups, every pin hashed. The client
group is locked from client/pyproject.toml (the light tagserve-client distribution)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENTS = ROOT / "requirements"
# Which extras each lock file holds (scripts/lock.sh compiles them so).
GROUPS = {
    "serve": [],
    "train": ["train"],
    "bench": ["train", "bench"],
    "dev": ["train", "bench", "test", "lint", "client"],
    "client": [],
}
# The pyproject.toml each group is compiled from, relative to the repository root.
SOURCES = {"client": "client/pyproject.toml"}
# What the light client must never pull in (tests/test_client_distribution.py checks an install).
HEAVY = {"torch", "fastapi", "uvicorn", "pydantic", "starlette", "numpy"}
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def _source(group: str) -> str:
    return SOURCES.get(group, "pyproject.toml")


def _pyproject(source: str = "pyproject.toml") -> dict:  # type: ignore[type-arg]
    return tomllib.loads((ROOT / source).read_text(encoding="utf-8"))["project"]


def _declared(extras: list[str], source: str = "pyproject.toml") -> dict[str, Requirement]:
    project = _pyproject(source)
    requirements = [Requirement(r) for r in project["dependencies"]]
    for extra in extras:
        requirements += [Requirement(r) for r in project["optional-dependencies"][extra]]
    return {
        canonicalize_name(r.name): r
        for r in requirements
        if r.marker is None or r.marker.evaluate({"extra": ""})
    }


def _lock(group: str) -> tuple[dict[str, str], set[str], set[str]]:
    """Pins, the packages pip-compile says come straight from pyproject.toml, and unhashed pins."""
    pins: dict[str, str] = {}
    direct: set[str] = set()
    unhashed: set[str] = set()
    current = ""
    # pip-compile's note for a dependency taken straight from the source, e.g.
    # "tagserve (pyproject.toml)" or "tagserve-client (client/pyproject.toml)".
    source = _source(group)
    me = f"{_pyproject(source)['name']} ({source})"
    lines = (REQUIREMENTS / f"{group}.txt").read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        match = _PIN.match(line)
        if match:
            current = canonicalize_name(match.group(1))
            pins[current] = match.group(2)
            if "--hash=sha256:" not in (lines[i + 1] if i + 1 < len(lines) else ""):
                unhashed.add(current)
        elif current and me in line:
            direct.add(current)
    return pins, direct, unhashed


def _torch_pin() -> Requirement:
    lines = (REQUIREMENTS / "torch.txt").read_text(encoding="utf-8").splitlines()
    pins = [Requirement(line) for line in lines if line.strip() and not line.startswith("#")]
    assert len(pins) == 1, "requirements/torch.txt holds exactly one pin"
    return pins[0]


@pytest.mark.parametrize("group", sorted(GROUPS))
def test_lock_has_exactly_the_declared_dependencies(group: str) -> None:
    declared = _declared(GROUPS[group], _source(group))
    if group == "client":
        assert "torch" not in declared, "the light client must not depend on torch"
    else:
        declared.pop("torch")  # pinned once, in requirements/torch.txt
    pins, direct, _ = _lock(group)
    assert sorted(direct) == sorted(declared), (
        f"requirements/{group}.txt and pyproject.toml list different direct dependencies; "
        "run bash scripts/lock.sh --keep"
    )
    for name, requirement in declared.items():
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"{name}=={pins[name]} in requirements/{group}.txt is outside pyproject's "
            f"{requirement.specifier}"
        )


@pytest.mark.parametrize("group", sorted(GROUPS))
def test_every_pin_is_hashed_and_matches_the_dev_lock(group: str) -> None:
    pins, _, unhashed = _lock(group)
    assert not unhashed, f"pins without --hash in requirements/{group}.txt: {sorted(unhashed)}"
    assert "torch" not in pins, "torch is pinned in requirements/torch.txt only"
    dev_pins, _, _ = _lock("dev")
    differing = {n: (v, dev_pins.get(n)) for n, v in pins.items() if dev_pins.get(n) != v}
    assert not differing, f"requirements/{group}.txt differs from dev.txt: {differing}"


def test_the_client_extra_and_the_client_distribution_agree() -> None:
    # tagserve[client] and tagserve-client install the same module; they need the same things.
    extra = [Requirement(r) for r in _pyproject()["optional-dependencies"]["client"]]
    alone = [Requirement(r) for r in _pyproject(SOURCES["client"])["dependencies"]]
    assert sorted(map(str, extra)) == sorted(map(str, alone))


def test_the_client_lock_is_light() -> None:
    pins, _, _ = _lock("client")
    assert "httpx" in pins
    assert not HEAVY & set(pins), f"requirements/client.txt pulls in {sorted(HEAVY & set(pins))}"


def test_torch_pin_is_inside_the_declared_range() -> None:
    pin = _torch_pin()
    (version,) = [s.version for s in pin.specifier if s.operator == "=="]
    assert _declared([])["torch"].specifier.contains(version)
