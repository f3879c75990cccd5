# syntax=docker/dockerfile:1
# zns-journey-worker image: `zns worker` by default; also `zns flower`, `zns webhooks`, `zns check`.
#
# Stage `build` builds every wheel (ours, the developer tools' and our dependencies'); the final
# stage installs only the product's from a bind mount with --no-index, so the image holds no
# sandbox, bench or demo, no wheel files, no build tools, no pip cache, no source tree and no
# secrets: configuration and credentials arrive as ZNS_* variables at run time (see deploy/).
# Stage `sandbox` (`--target sandbox`) is the sandbox Zalo for the laptop stack of
# docker-compose.yml, never for production. Pin the base by digest in your registry mirror for
# reproducible builds.

FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY worker ./worker
COPY tasks ./tasks
COPY devtools ./devtools
RUN python -m pip wheel --wheel-dir /wheels . ./devtools

FROM python:3.11-slim-bookworm AS sandbox
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m pip install --no-index --find-links=/wheels /wheels/zns_journey_devtools-*.whl
WORKDIR /srv/zns
USER 10001:10001
EXPOSE 8765
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=5 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8765/_sandbox/stats', timeout=2)"]
ENTRYPOINT ["zns"]
CMD ["sandbox", "--host", "0.0.0.0", "--port", "8765", "--allow-remote"]

FROM python:3.11-slim-bookworm
LABEL org.opencontainers.image.title="zns-journey-worker" \
      org.opencontainers.image.description="Celery workers sending Zalo ZNS Journey messages"
# Bytecode is compiled at install time; at run time the root filesystem is read-only anyway.
# Unbuffered: every log line reaches the container runtime before a crash or SIGKILL.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    ZNS_CELERY__HEALTH_FILE=/tmp/zns-worker-health.json
RUN groupadd --system --gid 10001 zns \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin zns
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m pip install --no-index --find-links=/wheels /wheels/zns_journey_worker-*.whl
# An empty, root-owned working directory: no stray .env is read from it.
WORKDIR /srv/zns
USER 10001:10001
# Worker metrics (ZNS_CELERY__METRICS_PORT), Flower, the webhook receiver and its metrics.
EXPOSE 9808 5555 8780 9809
# Liveness: the worker's heartbeat file (no broker round trip). Flower and the sandbox override it.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 CMD ["zns", "check"]
# Exec form: SIGTERM reaches Celery itself (warm shutdown: tasks in hand finish), not a shell.
ENTRYPOINT ["zns"]
CMD ["worker"]
