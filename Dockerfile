# syntax=docker/dockerfile:1
# The latentwire server: `latentwire serve` with the shipped models, as a non-root user.
#
#   GPU (default): docker build -t latentwire .
#   CPU only:      docker build -t latentwire:cpu \
#                    --build-arg BASE_IMAGE=debian:bookworm-slim \
#                    --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cpu .
#
# BASE_IMAGE is the runtime's base: NVIDIA's CUDA runtime by default. Torch is pinned by
# constraints.txt; PyPI's Linux wheel of it is the CUDA build, TORCH_INDEX (an extra index)
# swaps in another build of the same version, e.g. the CPU-only one (a far smaller image).
ARG BASE_IMAGE=nvidia/cuda:12.8.1-runtime-ubuntu24.04

# Stage 0: the browser runtime of the page (onnxruntime-web, @msgpack/msgpack), exactly as
# client/js/package-lock.json pins it.
FROM node:20-bookworm-slim AS js
WORKDIR /js
COPY client/js/package.json client/js/package-lock.json ./
RUN npm ci --no-audit --no-fund --ignore-scripts --loglevel=error

# Stage 1: the wheels of latentwire (code, manifests, decoders), latentwire-weights (the
# shipped models' weights, built from shared/zoo/) and latentwire-web (the page and the JS
# decoder with its runtime, built from client/js/), nothing else.
FROM python:3.12-slim-bookworm AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY client/ client/
COPY --from=js /js/node_modules client/js/node_modules
COPY server/ server/
COPY shared/ shared/
COPY training/ training/
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . ./shared/zoo ./client/js

# Stage 2: the runtime, with only the server extra installed (it pulls latentwire-weights).
FROM ${BASE_IMAGE} AS runtime
ARG TORCH_INDEX=""
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/latentwire/bin:$PATH
# Debian and Ubuntu's own python3 (3.11 on bookworm, 3.12 on noble), in a virtualenv.
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/latentwire
COPY constraints.txt /tmp/constraints.txt
COPY --from=wheel /wheels /tmp/wheels
RUN pip install ${TORCH_INDEX:+--extra-index-url "$TORCH_INDEX"} \
        --constraint /tmp/constraints.txt --find-links /tmp/wheels "latentwire[server]" \
    && rm -rf /tmp/wheels /tmp/constraints.txt

RUN useradd --system --uid 10001 --create-home latentwire && mkdir /models
USER 10001
WORKDIR /home/latentwire

# Listen on every interface inside the container; extra model packages go in /models.
ENV LATENTWIRE_HOST=0.0.0.0 \
    LATENTWIRE_PORT=8000 \
    LATENTWIRE_MODEL_DIR=/models
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=120s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request as r; r.urlopen('http://127.0.0.1:%s/readyz' % os.environ['LATENTWIRE_PORT'], timeout=2)"]
# uvicorn stops accepting on SIGTERM and lets in-flight requests finish for
# LATENTWIRE_SHUTDOWN_GRACE_S; exec form, so the server is PID 1 and gets the signal.
STOPSIGNAL SIGTERM
CMD ["latentwire", "serve"]
