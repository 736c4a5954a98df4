# syntax=docker/dockerfile:1
# Multi-stage build: wheels in a builder, a slim non-root runtime.

FROM python:3.11-slim AS builder
WORKDIR /src
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY pyproject.toml README.md ./
COPY app ./app
COPY migrations ./migrations
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --upgrade pip \
 && /opt/venv/bin/pip install '.[awskms]'

FROM python:3.11-slim AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PBF_MODE=production \
    PBF_DATA_DIR=/var/lib/pbf
RUN groupadd --system pbf && useradd --system --gid pbf --home-dir /var/lib/pbf pbf \
 && mkdir -p /var/lib/pbf && chown pbf:pbf /var/lib/pbf
COPY --from=builder /opt/venv /opt/venv
USER pbf
WORKDIR /var/lib/pbf
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status == 200 else 1)"
# Run `pbf-headless migrate` once per release (a job or init container) before serving.
CMD ["pbf-headless", "serve", "--host", "0.0.0.0", "--port", "8000"]
