#!/bin/sh
# `uv sync` as the Dockerfile's stages run it (installed as /opt/uv/sync in the builder stage and
# bind-mounted from there): the project in /src, exactly uv.lock (--frozen), no dev tools, into
# /opt/venv with Debian's Python 3.11. Arguments: the component's extra and the install mode.
set -eu
export SSL_CERT_FILE=/opt/uv/ca-certificates.crt \
  UV_PROJECT_ENVIRONMENT=/opt/venv \
  UV_PYTHON=/usr/bin/python3.11 \
  UV_PYTHON_DOWNLOADS=never \
  UV_LINK_MODE=copy \
  UV_COMPILE_BYTECODE=1 \
  UV_CACHE_DIR="${UV_CACHE_DIR:-/var/cache/uv}"
exec /opt/uv/bin/uv sync --project /src --frozen --no-default-groups "$@"
