#!/usr/bin/env bash
# Install tagserve with one locked dependency group into the current Python environment, from
# the lock only: torch from requirements/torch.txt, everything else from requirements/GROUP.txt
# with hashes checked and no resolution, then the project itself with no dependencies.
#   bash scripts/install.sh serve|train|bench|dev|client|ray [--editable]
# client is the light HTTP client alone: requirements/client.txt and the tagserve-client
# distribution in client/ (import tagserve_client), without torch or tagserve itself.
# ray is serving's set plus Ray Data (tagserve tag --engine ray); its shared pins are dev's, so
# it also installs on top of dev (what scripts/test.sh and CI do).
# TAGSERVE_TORCH_PIP_ARGS adds pip options for the torch step alone, e.g.
#   TAGSERVE_TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"
set -euo pipefail
cd "$(dirname "$0")/.."
group=${1:-serve}
editable=""
[ "${2:-}" = "--editable" ] && editable="--editable"
if [ ! -f "requirements/$group.txt" ] || [ "$group" = torch ]; then
  echo "install.sh: unknown group '$group'; one of: serve train bench dev client ray" >&2
  exit 2
fi
pip_install() { python3 -m pip install -q --disable-pip-version-check "$@"; }
if [ "$group" = client ]; then
  pip_install --no-deps --require-hashes -r requirements/client.txt
  pip_install --no-deps --no-build-isolation $editable ./client
  python3 -m pip check >/dev/null || { python3 -m pip check; exit 1; }
  echo "installed tagserve-client with the 'client' lock into $(python3 -c 'import sys; print(sys.prefix)')"
  exit 0
fi
# shellcheck disable=SC2086
pip_install --no-deps -r requirements/torch.txt ${TAGSERVE_TORCH_PIP_ARGS:-}
pip_install --no-deps --require-hashes -r "requirements/$group.txt"
pip_install --no-deps --no-build-isolation $editable .
python3 -m pip check >/dev/null || { python3 -m pip check; exit 1; }
echo "installed tagserve with the '$group' lock into $(python3 -c 'import sys; print(sys.prefix)')"
