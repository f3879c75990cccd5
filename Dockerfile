# syntax=docker/dockerfile:1
# Minimal image for the worker; issue #5 hardens it (healthcheck, compose, k8s manifests).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY worker ./worker
COPY tasks ./tasks
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 zns
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER 10001
WORKDIR /home/zns
# exec form: SIGTERM reaches Celery (warm shutdown), not a shell
ENTRYPOINT ["zns"]
CMD ["worker"]
