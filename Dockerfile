# syntax=docker/dockerfile:1
# recording-consumer worker image.
#   docker build -t recording-consumer .
#   docker run --rm -e KAFKA_BOOTSTRAP_SERVERS=broker:9092 recording-consumer
# Settings come from /app/config/consumer.toml, overridden by KAFKA_BOOTSTRAP_SERVERS and
# RECORDING_CONSUMER__<SECTION>__<KEY> variables (see consumer/settings/config.py).
# The download handler writes to /app/recordings (its default directory, "recordings", under
# WORKDIR): a volume owned by the image's user, e.g. `docker run -v recordings:/app/recordings`.

# Pinned by digest (the multi-arch index), tag kept for readers and for updating the pin:
#   docker buildx imagetools inspect python:3.11-slim-bookworm
ARG PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:2e32f7d302adc1c37428355c1e646897c0c53f4fd60b6a551245fb90ee129f91

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first, exactly as locked (versions and hashes: `make lock`), so this layer is
# rebuilt only when the lock changes, not on every source edit.
COPY requirements.lock ./
RUN pip install --require-hashes --no-deps -r requirements.lock
# Then the package itself (non-editable, no dev extras), built with the locked setuptools rather
# than whatever an isolated build would fetch.
COPY pyproject.toml ./
COPY consumer ./consumer
# The lock includes the `otel` and `msk` extras (`make lock`): tracing works in the image when
# OTEL_* is set, and AWS MSK IAM when kafka.sasl_mechanism says so.
RUN pip install --no-deps --no-build-isolation . \
    && recording-consumer --help > /dev/null \
    && python -c "import opentelemetry.sdk.trace, opentelemetry.exporter.otlp.proto.http, aws_msk_iam_sasl_signer"

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
# Owned by the user the worker runs as: a new named volume copies this ownership.
# /app/spool: the ingress's spool (`recording-consumer ingest`, ingress.spool_dir).
RUN install -d -o 10001 -g 10001 -m 0750 /app/recordings \
    && install -d -o 10001 -g 10001 -m 0700 /app/spool
VOLUME ["/app/recordings", "/app/spool"]
USER 10001:10001
# The worker drains in-flight handlers on SIGTERM for engine.shutdown_grace seconds: give it at
# least that long before SIGKILL (docker stop -t, compose stop_grace_period, k8s grace period).
STOPSIGNAL SIGTERM
# /metrics, /healthz (liveness), /readyz (readiness) on observability.listen: on in the image.
ENV RECORDING_CONSUMER__OBSERVABILITY__LISTEN=0.0.0.0:9464
# The ingress, when the image runs `ingest --config /app/config/consumer.toml` instead of `run`:
# Bandwidth's callbacks on 8080 (TLS terminated in front of it), its spool in /app/spool.
ENV RECORDING_CONSUMER__INGRESS__LISTEN=0.0.0.0:8080 \
    RECORDING_CONSUMER__INGRESS__SPOOL_DIR=/app/spool
EXPOSE 9464 8080
ENTRYPOINT ["recording-consumer"]
CMD ["run", "--config", "/app/config/consumer.toml"]
