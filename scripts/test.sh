#!/usr/bin/env bash
# The test command (README quickstart, and what CI runs): install the test dependencies, run the
# linters and the whole test suite; under CI (or TAGSERVE_DOCKER_SMOKE=1) also the Docker smoke
# test. Fails when a check fails or when no test ran.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)
section() { echo; echo "== [$(( $(date +%s) - started ))s] $*"; }

section "installing the locked dev set (requirements/dev.txt) into $(python3 -c 'import sys; print(sys.prefix)')"
bash scripts/install.sh dev --editable
section "installing the locked ray set (requirements/ray.txt) on top: tests/test_ray_engine.py needs it"
bash scripts/install.sh ray --editable

section "ruff"
ruff check .
ruff format --check .
section "mypy"
mypy
section "import contracts"
lint-imports
section "container files: hadolint, docker compose config (default and scaled profiles)"
hadolint Dockerfile
docker-compose -f docker-compose.yml config -q
docker-compose -f docker-compose.yml --profile scaled config -q

section "pytest"
set +e
python3 -m pytest -q -p no:cacheprovider -ra
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "pytest ran no test: failing"
  exit 1
fi
[ "$status" -eq 0 ] || exit "$status"

if [ -n "${CI:-}" ] || [ "${TAGSERVE_DOCKER_SMOKE:-0}" = "1" ]; then
  section "docker smoke test"
  bash tests/docker_smoke.sh
fi
section "all checks passed"
