# SignalStack's container images: one target per component (docs/components/images.md).
#
#   docker build --target <ingest|stream|sink|training|serving|backfill|drift|timescaledb> \
#     -t signalstack/<target>:TAG .
#
# `make images` (scripts/docker.sh) builds them all. BuildKit is required (RUN --mount): Docker
# >= 23, or DOCKER_BUILDKIT=1 with Docker 20.10. There is deliberately no `# syntax=` line: the
# daemon's built-in Dockerfile frontend is used, so nothing is pulled but the base images.
#
# Every image but timescaledb (PostgreSQL and TimescaleDB from Debian trixie, at the end):
# Debian's Python 3.11 (pyproject: requires-python ==3.11.*), a virtualenv at /opt/venv synced
# by uv from uv.lock (--frozen) with the component's extra only, user and group 10001, no secrets, and a read-only root filesystem at run time: /tmp (TMPDIR, HOME; MLflow
# downloads land there too) is the one writable path every image needs; serving adds its model
# dir, stream its work dir and checkpoints (emptyDir mounts on Kubernetes).
#
# Extra CA certificates (a TLS-intercepting proxy's) go in ca-certificates/*.crt of the build
# context: only the builder stages trust them; no final image contains them.

ARG BASE_IMAGE=debian:bookworm-slim
# timescaledb's base: the Debian release with PostgreSQL 17 and TimescaleDB (scripts/versions.env)
ARG TIMESCALEDB_BASE_IMAGE=debian:trixie-slim

# ---- base: the runtime every image shares ------------------------------------------------------
FROM ${BASE_IMAGE} AS base
# tzdata: the trading calendars' time zones; ca-certificates: the public roots for Polygon, MLflow.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      python3.11 ca-certificates tzdata \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 signalstack \
 && useradd --system --uid 10001 --gid 10001 --home-dir /tmp --no-create-home \
      --shell /usr/sbin/nologin signalstack
ENV LANG=C.UTF-8 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# ---- builder: uv, and the extra CA certificates for package downloads ---------------------------
# Nothing of this stage is copied into an image: the stages below bind-mount its /opt/uv (uv, the
# CA bundle that trusts the extra certificates, and `sync`, uv's settings for these builds) only
# while they run it, so each image's virtualenv is written once, in its own layer.
FROM base AS builder
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3.11-venv \
 && rm -rf /var/lib/apt/lists/*
COPY ca-certificates/ /usr/local/share/ca-certificates/
RUN update-ca-certificates
# uv itself, pinned in scripts/versions.env (as `make setup` installs it)
COPY scripts/versions.env /tmp/versions.env
RUN . /tmp/versions.env \
 && python3.11 -m venv /opt/uv \
 && PIP_CERT=/etc/ssl/certs/ca-certificates.crt /opt/uv/bin/pip install -q \
      --disable-pip-version-check "uv==${UV_VERSION}" \
 && cp /etc/ssl/certs/ca-certificates.crt /opt/uv/ca-certificates.crt
COPY scripts/image-uv-sync.sh /opt/uv/sync

# ---- runtime: what every final image adds to base ---------------------------------------------
FROM base AS runtime
LABEL org.opencontainers.image.vendor="signalstack" \
      org.opencontainers.image.title="signalstack" \
      org.opencontainers.image.licenses="Apache-2.0"
# HOME and TMPDIR on the one writable mount (matplotlib, MLflow and friends write caches there).
ENV HOME=/tmp TMPDIR=/tmp
WORKDIR /tmp

# The virtualenvs: the locked third-party packages first, then the project itself (a wheel,
# not editable: no source tree in the images). The first layer is keyed on the export of the
# image's own extra from uv.lock (stage `locks`), so it is rebuilt only when that set changes,
# not for a new dev tool; the second checks the venv against uv.lock (`uv sync --frozen`).
# uv's cache is a BuildKit cache mount, so a changed set downloads only what changed; not for the
# training stack, whose ~6 GB of unpacked wheels would stay on disk twice (the cache and the
# image) for a download that takes well under a minute.
FROM builder AS locks
RUN --mount=type=bind,source=pyproject.toml,target=/src/pyproject.toml \
    --mount=type=bind,source=uv.lock,target=/src/uv.lock \
    /opt/uv/sync export core serve train spark

# ---- ingest, sink, backfill: the runtime dependencies alone ------------------------------------
FROM runtime AS core
RUN --mount=type=bind,from=builder,source=/opt/uv,target=/opt/uv \
    --mount=type=cache,id=signalstack-uv,target=/var/cache/uv \
    --mount=type=bind,from=locks,source=/locks/core.txt,target=/src/requirements.txt \
    /opt/uv/sync deps
RUN --mount=type=bind,from=builder,source=/opt/uv,target=/opt/uv \
    --mount=type=cache,id=signalstack-uv,target=/var/cache/uv \
    --mount=type=bind,source=pyproject.toml,target=/src/pyproject.toml \
    --mount=type=bind,source=uv.lock,target=/src/uv.lock \
    --mount=type=bind,source=README.md,target=/src/README.md \
    --mount=type=bind,source=services,target=/src/services \
    --mount=type=bind,source=sql,target=/src/sql \
    /opt/uv/sync project
USER 10001:10001
ENTRYPOINT ["signalstack"]
CMD ["--help"]

FROM core AS ingest
EXPOSE 9108
CMD ["ingest"]

FROM core AS sink
EXPOSE 9109
CMD ["sink"]

FROM core AS backfill
CMD ["backfill", "--scheduled"]

# ---- serving: ONNX Runtime and the MLflow client only (no torch, scikit-learn or xgboost) -------
FROM runtime AS serving
RUN --mount=type=bind,from=builder,source=/opt/uv,target=/opt/uv \
    --mount=type=cache,id=signalstack-uv,target=/var/cache/uv \
    --mount=type=bind,from=locks,source=/locks/serve.txt,target=/src/requirements.txt \
    /opt/uv/sync deps
RUN --mount=type=bind,from=builder,source=/opt/uv,target=/opt/uv \
    --mount=type=cache,id=signalstack-uv,target=/var/cache/uv \
    --mount=type=bind,source=pyproject.toml,target=/src/pyproject.toml \
    --mount=type=bind,source=uv.lock,target=/src/uv.lock \
    --mount=type=bind,source=README.md,target=/src/README.md \
    --mount=type=bind,source=services,target=/src/services \
    --mount=type=bind,source=sql,target=/src/sql \
    /opt/uv/sync project --extra serve
# The conventional SERVING_MODEL_DIR for a mounted bundle volume. Not set here: unset, serving
# loads the MLflow alias (its downloads go to TMPDIR).
RUN install -d -o 10001 -g 10001 /var/lib/signalstack/models
USER 10001:10001
ENV SERVING_HOST=0.0.0.0 \
    SERVING_PORT=8080
EXPOSE 8080
ENTRYPOINT ["signalstack"]
CMD ["serve"]

# ---- training: the training stack (torch, xgboost, scikit-learn, MLflow); also runs `drift` ------
FROM runtime AS training
RUN --mount=type=bind,from=builder,source=/opt/uv,target=/opt/uv \
    --mount=type=bind,from=locks,source=/locks/train.txt,target=/src/requirements.txt \
    UV_NO_CACHE=1 /opt/uv/sync deps
RUN --mount=type=bind,from=builder,source=/opt/uv,target=/opt/uv \
    --mount=type=cache,id=signalstack-uv,target=/var/cache/uv \
    --mount=type=bind,source=pyproject.toml,target=/src/pyproject.toml \
    --mount=type=bind,source=uv.lock,target=/src/uv.lock \
    --mount=type=bind,source=README.md,target=/src/README.md \
    --mount=type=bind,source=services,target=/src/services \
    --mount=type=bind,source=sql,target=/src/sql \
    /opt/uv/sync project --extra train
USER 10001:10001
ENTRYPOINT ["signalstack"]
CMD ["train"]

# ---- stream: the Spark driver and executor image ------------------------------------------------
# Spark 4.0.x is PySpark's own distribution (jars, bin/spark-submit) from uv.lock, under
# SPARK_HOME=/opt/spark; the Kafka connector jars are resolved by `scripts/setup.sh spark` (the
# same Maven resolution `make setup` runs) and added to Spark's jars/ (the default classpath).
FROM base AS java
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      openjdk-17-jre-headless tini procps \
 && rm -rf /var/lib/apt/lists/*

FROM java AS spark-jars
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends maven unzip \
 && rm -rf /var/lib/apt/lists/*
COPY ca-certificates/ /usr/local/share/ca-certificates/
# ca-certificates-java's hook puts the extra CAs in Java's trust store too (for Maven).
RUN update-ca-certificates
COPY scripts/setup.sh scripts/versions.env /src/scripts/
RUN --mount=type=cache,id=signalstack-m2,target=/root/.m2 \
    SIGNALSTACK_DOWNLOAD_CACHE=/tmp/dl bash /src/scripts/setup.sh spark \
 && ls /src/.cache/spark-jars/jars/spark-sql-kafka-0-10_*.jar

FROM java AS stream
LABEL org.opencontainers.image.vendor="signalstack" \
      org.opencontainers.image.title="signalstack-stream" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN --mount=type=bind,from=builder,source=/opt/uv,target=/opt/uv \
    --mount=type=cache,id=signalstack-uv,target=/var/cache/uv \
    --mount=type=bind,from=locks,source=/locks/spark.txt,target=/src/requirements.txt \
    /opt/uv/sync deps
RUN --mount=type=bind,from=builder,source=/opt/uv,target=/opt/uv \
    --mount=type=cache,id=signalstack-uv,target=/var/cache/uv \
    --mount=type=bind,source=pyproject.toml,target=/src/pyproject.toml \
    --mount=type=bind,source=uv.lock,target=/src/uv.lock \
    --mount=type=bind,source=README.md,target=/src/README.md \
    --mount=type=bind,source=services,target=/src/services \
    --mount=type=bind,source=sql,target=/src/sql \
    /opt/uv/sync project --extra spark
COPY --from=spark-jars /src/.cache/spark-jars/jars/ /opt/venv/lib/python3.11/site-packages/pyspark/jars/
COPY spark-apps /opt/signalstack/spark-apps
COPY scripts/spark-entrypoint.sh /opt/signalstack/entrypoint.sh
RUN mkdir -p /opt/spark/work-dir /opt/spark/checkpoints \
 && for d in bin sbin jars; do ln -s "/opt/venv/lib/python3.11/site-packages/pyspark/$d" "/opt/spark/$d"; done \
 && chown 10001:10001 /opt/spark/work-dir /opt/spark/checkpoints
ENV SPARK_HOME=/opt/spark \
    PYSPARK_PYTHON=/opt/venv/bin/python \
    PYSPARK_DRIVER_PYTHON=/opt/venv/bin/python \
    STREAM_CHECKPOINT_DIR=/opt/spark/checkpoints \
    HOME=/tmp TMPDIR=/tmp
WORKDIR /opt/spark/work-dir
USER 10001:10001
ENTRYPOINT ["/opt/signalstack/entrypoint.sh"]
CMD ["signalstack", "stream", "--engine", "spark"]

# ---- drift: the drift CronJob's image: serving's layers (numpy, the MLflow client, the store, the
# kubernetes client) with `drift` as its command; no torch, scikit-learn or xgboost -------------
FROM serving AS drift
CMD ["drift"]

# ---- timescaledb: PostgreSQL 17 with Debian's TimescaleDB (the Apache-licensed build) ----------
# For clusters that cannot pull the chart's default image (timescale/timescaledb, the Community
# edition): the `ci` profile of the live-cluster test. A drop-in for the chart's StatefulSet:
# scripts/timescaledb-entrypoint.sh keeps the part of the postgres images' entrypoint contract the
# chart uses; postgres runs as uid/gid 70 (the alpine images' ids the chart's securityContext
# names) on a read-only root: only PGDATA's parent, /var/run/postgresql and /tmp are written.
FROM ${TIMESCALEDB_BASE_IMAGE} AS timescaledb
LABEL org.opencontainers.image.vendor="signalstack" \
      org.opencontainers.image.title="signalstack-timescaledb" \
      org.opencontainers.image.licenses="Apache-2.0"
# The user first, so that the packages' scripts find it; no cluster made by postgresql-common
# (the entrypoint runs initdb); the versions pinned in scripts/versions.env, or the build fails;
# not the snakeoil key pair ssl-cert (a postgresql-common dependency) generates: no key in a layer.
RUN --mount=type=bind,source=scripts/versions.env,target=/run/versions.env \
    . /run/versions.env \
 && groupadd --system --gid 70 postgres \
 && useradd --system --uid 70 --gid 70 --home-dir /var/lib/postgresql --no-create-home \
      --shell /bin/sh postgres \
 && apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql-common \
 && sed -ri 's/^#?\s*create_main_cluster\s*=.*/create_main_cluster = false/' \
      /etc/postgresql-common/createcluster.conf \
 && ts="postgresql-${POSTGRES_MAJOR}-timescaledb" \
 && want=$(apt-cache policy "$ts" | awk '/Candidate:/{print $2}') \
 && case "$want" in "${TIMESCALEDB_DEB_VERSION}"[+-]*) ;; \
      *) echo "expected $ts ${TIMESCALEDB_DEB_VERSION}, ${DEBIAN_SUITE} has '${want}'" >&2; exit 1;; esac \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      "postgresql-${POSTGRES_MAJOR}" "$ts=$want" \
 && got=$(dpkg-query -W -f='${Version}' "$ts") && [ "$got" = "$want" ] \
 && ln -s "/usr/lib/postgresql/${POSTGRES_MAJOR}/bin" /opt/postgresql-bin \
 && /opt/postgresql-bin/postgres --version \
 && rm -rf /var/lib/apt/lists/* \
 && rm -f /etc/ssl/private/ssl-cert-snakeoil.key /etc/ssl/certs/ssl-cert-snakeoil.pem \
 && find /etc/ssl/certs -xtype l -delete \
 && install -d -o 70 -g 70 -m 2775 /var/lib/postgresql /var/lib/postgresql/data /var/run/postgresql \
 && install -d -m 0755 /docker-entrypoint-initdb.d
COPY scripts/timescaledb-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
# the real binaries (postgres, initdb, pg_ctl, psql, pg_isready) before Debian's wrappers
ENV PATH=/opt/postgresql-bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 \
    PGDATA=/var/lib/postgresql/data \
    HOME=/var/lib/postgresql
USER 70:70
STOPSIGNAL SIGINT
EXPOSE 5432
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["postgres"]
