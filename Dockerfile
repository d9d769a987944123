# tagserve: the HTTP service with the shipped models baked in. CPU-only torch by default.
# Standard Dockerfile syntax only (no BuildKit features), so the legacy builder works too.
#
# The base image is pinned by digest: the official python:3.11-slim multi-platform index, as
# recorded (with the same digest) in several public repositories' Dockerfiles and build logs;
# it could not be checked against a registry from where this file was written. To move to a
# newer patch release, re-resolve it (`docker buildx imagetools inspect python:3.11-slim`, or
# `docker pull python:3.11-slim` and its `Digest:` line) and change it here, as a reviewed
# change like a dependency bump. --build-arg PYTHON_IMAGE=... builds on another base (the
# smoke test builds on a local stand-in tagged python:3.11-slim).
ARG PYTHON_IMAGE=python:3.11-slim@sha256:9c900dea9e8fb7e16277c179b555cc72d29a352dbc33cff48ad5a0412fd5bfc7

FROM ${PYTHON_IMAGE} AS builder
# Everything is installed from the lock (requirements/): torch from requirements/torch.txt
# (the CPU build from PyTorch's index by default), the rest from requirements/serve.txt with
# hashes checked, then the project with no dependencies. A wheel file copied into
# docker/wheels/ can stand in for torch (what the smoke test does):
#   --build-arg TORCH_SPEC=/tmp/wheels/torch-2.13.0+cpu-....whl --build-arg TORCH_PIP_ARGS=
ARG TORCH_SPEC="-r /tmp/requirements/torch.txt"
ARG TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"
# Extra pip options for every install (e.g. --cert for a proxy's CA, or an index mirror).
ARG PIP_ARGS=""
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY docker/wheels/ /tmp/wheels/
COPY requirements/ /tmp/requirements/
# Then what serving never loads goes from torch: its C++ tests, test binaries and libraries
# (test/, bin/ but torch_shm_manager, which `import torch` checks for, lib/*test*.so) and
# protoc, the headers and CMake files for building extensions (include/, share/) and any
# static library; and the tests numpy ships. Sizes before and after: README "Deploying with
# Docker".
# hadolint ignore=DL3013
RUN pip install ${PIP_ARGS} ${TORCH_PIP_ARGS} --no-deps ${TORCH_SPEC} \
    && pip install ${PIP_ARGS} --no-deps --require-hashes -r /tmp/requirements/serve.txt \
    && rm -rf /tmp/wheels \
    && site=$(python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])") \
    && rm -rf "$site/torch/test" "$site/torch/include" "$site/torch/share" \
        "$site"/torch/bin/*Test "$site"/torch/bin/test_* "$site"/torch/bin/protoc* \
        "$site"/torch/lib/*test*.so "$site/torch/lib/libbackend_with_compiler.so" \
        "$site/torch/lib/libaoti_custom_ops.so" \
    && find "$site" -name '*.a' -delete \
    && find "$site/numpy" -type d -name tests -prune -exec rm -rf {} + \
    && python -c "import torch, numpy; torch.zeros(2) @ torch.ones(2); print(torch.__version__)"
WORKDIR /src
COPY pyproject.toml README.md ./
# The layer folders, and tagserve/ whose links (tagserve/model -> ../model, ...) join them into
# the one installed package. Not training/ (.dockerignore leaves it out of the context too):
# `tagserve serve` and `tagserve tag` never import it, so its link is removed and the package
# is built without tagserve.training (`tagserve train` needs a checkout: README). python -I:
# the checks import the installed package, not the sources in /src.
COPY model ./model
COPY text ./text
COPY service ./service
COPY tagserve ./tagserve
# hadolint ignore=DL3013
RUN rm tagserve/training \
    && pip install ${PIP_ARGS} --no-deps --no-build-isolation . \
    && pip check \
    && python -I -c "from tagserve.model.artifact import available; assert available() == ['ner', 'ner-fast', 'slots'], available()" \
    && python -I -c "import importlib.util as u; assert u.find_spec('tagserve.training') is None" \
    && python -I -c "import tagserve.cli, tagserve.service.settings, uvloop, httptools"

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="tagserve" \
      org.opencontainers.image.description="BiLSTM-CRF named entities and slot filling over HTTP"
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin tagserve
COPY --from=builder /opt/venv /opt/venv
# No TAGSERVE_* here: the settings' defaults apply (tagserve/service/settings.py, README
# "Operating tagserve"); tests/test_deploy_defaults.py keeps it so.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1
USER 10001
WORKDIR /home/tagserve
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2).status != 200)"]
CMD ["tagserve", "serve", "--host", "0.0.0.0", "--port", "8000"]
