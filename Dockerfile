# syntax=docker/dockerfile:1
# recording-consumer worker image.
#   docker build -t recording-consumer .
#   docker run --rm -e KAFKA_BOOTSTRAP_SERVERS=broker:9092 recording-consumer
# Settings come from /app/config/consumer.toml, overridden by KAFKA_BOOTSTRAP_SERVERS and
# RECORDING_CONSUMER__<SECTION>__<KEY> variables (see consumer/config.py).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first, read from pyproject.toml itself, so this layer is rebuilt only when
# pyproject.toml changes, not on every source edit.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt
# Then the package itself (non-editable, no dev extras; its dependencies are already there).
COPY consumer ./consumer
RUN pip install --no-deps . \
    && recording-consumer --help > /dev/null

FROM ${PYTHON_IMAGE}
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid 10001 --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin app
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY config/ ./config/
USER 10001:10001
# The worker drains in-flight handlers on SIGTERM for engine.shutdown_grace seconds: give it at
# least that long before SIGKILL (docker stop -t, compose stop_grace_period, k8s grace period).
STOPSIGNAL SIGTERM
# /metrics, /healthz (liveness), /readyz (readiness) on observability.listen: on in the image.
ENV RECORDING_CONSUMER__OBSERVABILITY__LISTEN=0.0.0.0:9464
EXPOSE 9464
ENTRYPOINT ["recording-consumer"]
CMD ["run", "--config", "/app/config/consumer.toml"]
