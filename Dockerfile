# The paas control plane in a container, driving the host's Docker (see docker-compose.yml).
#   docker build -t paas-control-plane:0.1.0 .
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

LABEL org.opencontainers.image.title="paas control plane" \
      org.opencontainers.image.description="API, git server and console of paas; runs pods on the host's Docker" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.source="https://github.com/paas/paas" \
      org.opencontainers.image.licenses="MIT"

RUN if ! command -v git >/dev/null; then \
        apt-get update && apt-get install -y --no-install-recommends git ca-certificates \
        && rm -rf /var/lib/apt/lists/*; \
    fi

COPY . /src/paas
RUN python3 -m venv /opt/paas && /opt/paas/bin/pip install --no-cache-dir --disable-pip-version-check /src/paas

# Where apps, hosted repos and the token live (mount a volume here).
ENV PAAS_DATA=/data
# Where pods run: docker (this image talks to /var/run/docker.sock).
ENV PAAS_BACKEND=docker
# Listen on every interface of the container.
ENV PAAS_HOST=0.0.0.0
# Port of the API, console and git server.
ENV PAAS_PORT=8000
# The router: every app at http://APP.localhost:PAAS_ROUTER_PORT/, with the https sidecar at
# https://APP.localhost:PAAS_ROUTER_TLS_PORT/ (0: no router on that port).
ENV PAAS_ROUTER_PORT=8080
ENV PAAS_ROUTER_TLS_PORT=8443
# How pods reach this control plane's git server (it joins each app's network under this name).
ENV PAAS_INTERNAL_URL=http://paas-control-plane:8000
# Admin token; empty: generated on first start and kept in $PAAS_DATA/token.
ENV PAAS_TOKEN=""
ENV PATH=/opt/paas/bin:$PATH

EXPOSE 8000 8080 8443
VOLUME /data
ENTRYPOINT ["paas", "up"]
