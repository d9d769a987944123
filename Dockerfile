# tagserve: the HTTP service with the shipped models baked in. CPU-only torch by default.
# Standard Dockerfile syntax only (no BuildKit features), so the legacy builder works too.
ARG PYTHON_IMAGE=python:3.11-slim

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
# hadolint ignore=DL3013
RUN pip install ${PIP_ARGS} ${TORCH_PIP_ARGS} --no-deps ${TORCH_SPEC} \
    && pip install ${PIP_ARGS} --no-deps --require-hashes -r /tmp/requirements/serve.txt \
    && rm -rf /tmp/wheels
WORKDIR /src
COPY pyproject.toml README.md ./
# The layer folders, and tagserve/ whose links (tagserve/model -> ../model, ...) join them into
# the one installed package.
COPY model ./model
COPY text ./text
COPY training ./training
COPY service ./service
COPY tagserve ./tagserve
# hadolint ignore=DL3013
RUN pip install ${PIP_ARGS} --no-deps --no-build-isolation . \
    && pip check \
    && python -c "from tagserve.model.artifact import available; assert available() == ['ner', 'slots'], available()"

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="tagserve" \
      org.opencontainers.image.description="BiLSTM-CRF named entities and slot filling over HTTP"
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin tagserve
COPY --from=builder /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    TAGSERVE_MAX_BATCH_SIZE=32 \
    TAGSERVE_MAX_WAIT_MS=0 \
    TAGSERVE_TORCH_THREADS=1 \
    TAGSERVE_DRAIN_TIMEOUT_S=10
USER 10001
WORKDIR /home/tagserve
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2).status != 200)"]
CMD ["tagserve", "serve", "--host", "0.0.0.0", "--port", "8000"]
