"""The light client distribution (client/, tagserve-client) installs from its lock alone into
a fresh virtualenv, ``bash scripts/install.sh client``, and works there without torch,
FastAPI, uvicorn, pydantic or tagserve itself (slow: it makes a virtualenv and installs).

The packages come from requirements/client.txt with hashes (the package registry is the one
thing it reaches); the client is built from client/ with the locked setuptools, no build
isolation. Without CI set, an unreachable registry skips the test; under CI it fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Must not be importable where only the light client is installed.
HEAVY = ["torch", "fastapi", "uvicorn", "pydantic", "starlette", "numpy", "tagserve"]
# pip's words when it cannot reach an index: the one reason to skip outside CI.
_OFFLINE = (
    "Failed to establish a new connection",
    "Temporary failure in name resolution",
    "Network is unreachable",
    "No matching distribution found",
)

# Run by the new virtualenv's Python, in isolated mode (-I: no cwd, no PYTHONPATH), so only
# what it has installed can be imported.
PROBE = textwrap.dedent(
    """
    import importlib.util, json, sys
    import httpx
    import tagserve_client
    from tagserve_client import Entity, TagserveClient, TagserveError

    tagged = {
        "model": {"name": "ner", "version": "1.0.0"},
        "results": [{
            "text": "Harry Potter",
            "tokens": [
                {"text": "Harry", "start": 0, "end": 5, "tag": "B-PER", "score": 0.99},
                {"text": "Potter", "start": 6, "end": 12, "tag": "I-PER", "score": 0.98},
            ],
            "entities": [
                {"label": "PER", "text": "Harry Potter", "start": 0, "end": 12, "score": 0.98}
            ],
        }],
    }
    timed_out = {"detail": "the model did not answer", "code": "model_timeout"}

    def answer(request):
        if request.url.path == "/tag":
            return httpx.Response(200, json=tagged)
        return httpx.Response(503, json=timed_out)

    with TagserveClient("http://tagserve.test", transport=httpx.MockTransport(answer)) as c:
        response = c.tag(text="Harry Potter")
        try:
            c.models()
        except TagserveError as error:
            code = error.code
    assert response.results[0].entities == (Entity("PER", "Harry Potter", 0, 12, 0.98),)
    print(json.dumps({
        "file": tagserve_client.__file__,
        "model": response.model_name,
        "code": code,
        "importable": [n for n in sys.argv[1:] if importlib.util.find_spec(n) is not None],
    }))
    """
)


def _run(
    command: list[str], cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=240)


@pytest.mark.slow
def test_the_light_client_installs_from_its_lock_without_torch(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    made = _run([sys.executable, "-m", "venv", str(venv)])
    assert made.returncode == 0, made.stderr
    bin_dir = venv / "bin"
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTHON")}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", VIRTUAL_ENV=str(venv))

    installed = _run(["bash", "scripts/install.sh", "client"], cwd=ROOT, env=env)
    output = installed.stdout + installed.stderr
    offline = installed.returncode != 0 and any(words in output for words in _OFFLINE)
    if offline and not os.environ.get("CI"):
        pytest.skip(f"the package registry is not reachable:\n{output[-2000:]}")
    assert installed.returncode == 0, output
    assert "installed tagserve-client with the 'client' lock" in installed.stdout

    listed = _run([str(bin_dir / "python"), "-m", "pip", "list", "--format=json"], env=env)
    assert listed.returncode == 0, listed.stderr
    names = {item["name"].lower() for item in json.loads(listed.stdout)}
    assert {"tagserve-client", "httpx"} <= names
    assert not names & set(HEAVY), f"installed with the light client: {names & set(HEAVY)}"

    probe = _run([str(bin_dir / "python"), "-I", "-c", PROBE, *HEAVY], cwd=tmp_path, env=env)
    assert probe.returncode == 0, probe.stdout + probe.stderr
    seen = json.loads(probe.stdout)
    assert Path(seen["file"]).is_relative_to(venv), "imported from the new virtualenv"
    assert (seen["model"], seen["code"]) == ("ner", "model_timeout")
    assert seen["importable"] == [], f"importable beside the light client: {seen['importable']}"
