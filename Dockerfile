# corral's control plane in a container: `corral up` (API, scheduler loop, dashboard).
#
#   docker build -t corral .
#   docker run -d --name corral -p 8765:8765 -v corral-data:/var/lib/corral corral
#   docker exec corral corral ls          # CORRAL_DATA_DIR points at the admin token
#
# Everything is installed from this repository's own files (no package index entry for corral
# is needed). The default command runs work as local processes inside the container on a
# virtual pool, which is for trying it; in production give it a pool file and a real engine:
#   docker run ... -v /etc/corral:/etc/corral:ro corral \
#       up --host 0.0.0.0 --pool /etc/corral/pool.yaml --db postgresql://... --backend agent
# (docs/howto/postgres-replicas.md, docs/howto/connect-a-cluster.md).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CORRAL_DATA_DIR=/var/lib/corral

# a user of its own: corral never needs root in the container (workers run as this user too)
RUN useradd --system --uid 10001 --home-dir /var/lib/corral --create-home corral

WORKDIR /src
# the metadata first, so a change to the sources alone does not reinstall the dependencies
COPY pyproject.toml README.md ./
COPY src/ ./src/
RUN pip install ".[server]" && rm -rf /src

USER corral
WORKDIR /var/lib/corral
VOLUME ["/var/lib/corral"]
EXPOSE 8765

HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8765/v1/health', timeout=4)"

# corral up stops on SIGTERM: running work gets --grace seconds (docker stop -t should exceed it)
STOPSIGNAL SIGTERM
ENTRYPOINT ["corral"]
CMD ["up", "--host", "0.0.0.0", "--port", "8765", "--data-dir", "/var/lib/corral", "--worker-user", "same"]
