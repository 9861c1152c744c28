#!/bin/sh
# uv as the Dockerfile's stages run it (installed as /opt/uv/sync in the builder stage and
# bind-mounted from there), with Debian's Python 3.11 and the project in /src:
#
#   sync export EXTRA...    the locked third-party packages of each extra ("core": none) as
#                           /locks/EXTRA.txt (uv export --frozen: pins and hashes, uv.lock's)
#   sync deps               /opt/venv with exactly /src/requirements.txt (one of those exports)
#   sync project [ARGS]     uv sync --frozen --no-editable ARGS: the project as a wheel, and
#                           the venv checked against uv.lock
#
# The deps layer is keyed on the export of its own extra, so a change to uv.lock that does
# not touch that extra (a dev tool, another extra) rebuilds none of it.
set -eu
export SSL_CERT_FILE=/opt/uv/ca-certificates.crt \
  UV_PROJECT_ENVIRONMENT=/opt/venv \
  UV_PYTHON=/usr/bin/python3.11 \
  UV_PYTHON_DOWNLOADS=never \
  UV_LINK_MODE=copy \
  UV_COMPILE_BYTECODE=1 \
  UV_CACHE_DIR="${UV_CACHE_DIR:-/var/cache/uv}"
uv=/opt/uv/bin/uv
mode=$1
shift
case "$mode" in
  export)
    mkdir -p /locks
    for extra in "$@"; do
      if [ "$extra" = core ]; then set --; else set -- --extra "$extra"; fi
      "$uv" export --project /src --frozen --no-default-groups --no-emit-project \
        --no-header --no-annotate --format requirements-txt "$@" >"/locks/$extra.txt"
    done
    ;;
  deps)
    "$uv" venv --quiet /opt/venv
    "$uv" pip sync --python /opt/venv/bin/python --require-hashes /src/requirements.txt
    ;;
  project)
    exec "$uv" sync --project /src --frozen --no-default-groups --no-editable "$@"
    ;;
  *)
    echo "usage: sync export EXTRA... | deps | project [ARGS]" >&2
    exit 64
    ;;
esac
