#!/usr/bin/env bash
# Refresh the lock: re-resolve every dependency group declared in pyproject.toml into
# requirements/<group>.txt, every package (transitive ones too) at an exact version with hashes.
#   bash scripts/lock.sh            # newest releases the ranges in pyproject.toml allow
#   bash scripts/lock.sh --keep     # keep today's pins, only add or drop what pyproject changed
# Then run the test command (bash scripts/test.sh): it installs the new set into the current
# environment and tells whether it works. torch is pinned in requirements/torch.txt alone.
set -euo pipefail
cd "$(dirname "$0")/.."
PIP_TOOLS_VERSION=7.6.2
upgrade=--upgrade
[ "${1:-}" = "--keep" ] && upgrade=""

tools=$(mktemp -d)
trap 'rm -rf "$tools"' EXIT
python3 -m venv "$tools/venv"
"$tools/venv/bin/python" -m pip install -q "pip-tools==$PIP_TOOLS_VERSION"

# compile OUTPUT SOURCE [pip-compile options]: SOURCE is pyproject.toml (tagserve) or
# client/pyproject.toml (the light tagserve-client distribution).
compile() {
  local output=$1 source=$2
  shift 2
  echo "== requirements/$output.txt"
  "$tools/venv/bin/pip-compile" -q --strip-extras --generate-hashes --all-build-deps \
    --unsafe-package torch --no-emit-index-url --no-emit-find-links \
    --constraint requirements/torch.txt "$@" --output-file "requirements/$output.txt" "$source"
}

# dev is resolved first and holds everything but ray; the other groups are cut from it, so a
# package has one version in every group.
compile dev pyproject.toml $upgrade \
  --extra train --extra bench --extra test --extra lint --extra client
compile serve pyproject.toml --upgrade --constraint requirements/dev.txt
compile train pyproject.toml --upgrade --constraint requirements/dev.txt --extra train
compile bench pyproject.toml --upgrade --constraint requirements/dev.txt --extra train --extra bench
# The client distribution alone (httpx and its dependencies, no torch): dev holds the same
# httpx through tagserve's client extra, so the pins agree.
compile client client/pyproject.toml --upgrade --constraint requirements/dev.txt
# ray (tagserve tag --engine ray) is not in dev: its own packages (ray, pandas, msgpack,
# protobuf, ...) are added on top of dev's pins, which it shares and never moves.
compile ray pyproject.toml --upgrade --constraint requirements/dev.txt --extra ray
echo "== locked: $(grep -cE '^[a-z0-9]' requirements/dev.txt) packages in dev; now run: bash scripts/test.sh"
