#!/usr/bin/env bash
# The timescaledb image's entrypoint (Dockerfile target `timescaledb`; docs/components/images.md):
# the part of the official postgres images' docker-entrypoint.sh contract the chart's StatefulSet
# uses, plus what the timescale/timescaledb image adds at initdb.
#
#   docker-entrypoint.sh postgres [-c name=value …]   initialise PGDATA when empty, then exec postgres
#   docker-entrypoint.sh -c name=value …              the same (options for postgres)
#   docker-entrypoint.sh postgres --version           (--help, -C name, …) postgres itself, no initdb
#   docker-entrypoint.sh COMMAND …                    anything else runs as given (sh, psql, …)
#
# Environment: POSTGRES_PASSWORD (required to initialise), POSTGRES_USER (postgres), POSTGRES_DB
# (POSTGRES_USER), PGDATA (/var/lib/postgresql/data), PGPORT (5432), TIMESCALEDB_TELEMETRY
# (off: timescaledb.telemetry_level=off; otherwise basic, the upstream image's default).
#
# On an empty PGDATA: initdb (scram-sha-256 for TCP connections, trust on the unix socket, which
# only the pod's containers reach; the password goes to initdb through a pipe, never a file),
# listen_addresses='*', timescaledb preloaded; a temporary server reachable only by its unix socket
# creates POSTGRES_DB and the timescaledb extension (in template1, postgres and POSTGRES_DB, as the
# upstream image does) and runs /docker-entrypoint-initdb.d/*.sql (psql) and *.sh (executable: run;
# otherwise sourced) in name order against POSTGRES_DB; then it stops and postgres starts for real.
# A PGDATA that holds a database is used as it is. Runs as any uid owning PGDATA's parent (the
# image's postgres, 70) on a read-only root filesystem.
set -Eeuo pipefail

log() { printf '%s [entrypoint] %s\n' "$(date -u +'%Y-%m-%d %H:%M:%S UTC')" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# no arguments, or only options (`-c x=y …`, `--x=y`): postgres with them
if [ $# -eq 0 ] || [ "${1:0:1}" = '-' ]; then set -- postgres "$@"; fi
if [ "$1" != postgres ]; then exec "$@"; fi
for a in "${@:2}"; do # postgres --version, --help, -C name: nothing to initialise
  case "$a" in -V | --version | '-?' | --help | --describe-config | -C) exec "$@" ;; esac
done

[ "$(id -u)" != 0 ] || die "postgres does not run as root: run the image as its postgres user (--user 70:70, runAsUser: 70)"

export PGDATA="${PGDATA:-/var/lib/postgresql/data}"
export PGPORT="${PGPORT:-5432}"
export POSTGRES_USER="${POSTGRES_USER:-postgres}"
export POSTGRES_DB="${POSTGRES_DB:-$POSTGRES_USER}"
INCOMPLETE="$PGDATA/signalstack-initdb.incomplete" # removed once initialisation has finished

psql_db() { # DB [psql args…]: over the temporary server's unix socket
  local db=$1
  shift
  psql -v ON_ERROR_STOP=1 --no-psqlrc --no-password --username "$POSTGRES_USER" --dbname "$db" "$@"
}

init_pgdata() {
  if [ -z "${POSTGRES_PASSWORD:-}" ]; then
    die "POSTGRES_PASSWORD is not set: the database is initialised with a password for \
$POSTGRES_USER (scram-sha-256); set POSTGRES_PASSWORD (the chart takes it from its Secret)"
  fi
  mkdir -p "$PGDATA" || die "cannot create PGDATA $PGDATA (is its parent a writable mount?)"
  chmod 700 "$PGDATA"
  log "initialising $PGDATA (user $POSTGRES_USER, database $POSTGRES_DB)"
  initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") \
    --auth-host=scram-sha-256 --auth-local=trust --encoding=UTF8 --locale=C.UTF-8 \
    -D "$PGDATA" >&2
  touch "$INCOMPLETE"
  trap 'log "ERROR: initialising $PGDATA failed (above); the next start sets it aside and initialises again"' ERR
  printf '%s\n' "host all all all scram-sha-256" "host replication all all scram-sha-256" \
    >>"$PGDATA/pg_hba.conf"
  local telemetry=basic
  [ "${TIMESCALEDB_TELEMETRY:-}" != off ] || telemetry=off
  cat >>"$PGDATA/postgresql.conf" <<EOF

# docker-entrypoint.sh (signalstack timescaledb image)
listen_addresses = '*'
shared_preload_libraries = 'timescaledb'
timescaledb.telemetry_level = $telemetry
EOF

  # the temporary server: the unix socket only, with the command line's settings
  local opts
  opts="-c listen_addresses='' -p $PGPORT $(printf '%q ' "${@:2}")"
  pg_ctl -D "$PGDATA" -o "$opts" -w -t 120 start >&2 || die "the temporary server did not start"
  if [ "$POSTGRES_DB" != postgres ]; then
    log "creating database $POSTGRES_DB"
    psql_db postgres --set db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";'
  fi
  local db
  for db in template1 postgres "$POSTGRES_DB"; do
    psql_db "$db" -q <<<'CREATE EXTENSION IF NOT EXISTS timescaledb CASCADE;'
  done
  local f
  for f in /docker-entrypoint-initdb.d/*; do
    [ -e "$f" ] || continue
    case "$f" in
      *.sh)
        if [ -x "$f" ]; then
          log "running $f"
          "$f"
        else
          log "sourcing $f"
          # shellcheck disable=SC1090
          . "$f"
        fi
        ;;
      *.sql)
        log "running $f"
        psql_db "$POSTGRES_DB" -f "$f"
        ;;
      *) log "ignoring $f" ;;
    esac
  done
  pg_ctl -D "$PGDATA" -m fast -w -t 120 stop >&2 || die "the temporary server did not stop"
  trap - ERR
  rm -f "$INCOMPLETE"
  log "initialisation done"
}

if [ -f "$INCOMPLETE" ]; then
  # An earlier start failed while initialising (a bad init script, a crash): nothing but what
  # initialisation made is there. Kept aside (one copy, replaced each time) and initialised again.
  log "$PGDATA holds an unfinished initialisation: moving it to $PGDATA.incomplete and starting over"
  rm -rf "$PGDATA.incomplete"
  mv "$PGDATA" "$PGDATA.incomplete" || die "cannot move $PGDATA aside: empty it to initialise again"
fi
if [ -s "$PGDATA/PG_VERSION" ]; then
  log "$PGDATA holds a database: skipping initialisation"
elif [ -d "$PGDATA" ] && [ -n "$(ls -A "$PGDATA")" ]; then
  die "$PGDATA is neither empty nor a database directory (no PG_VERSION); refusing to touch it"
else
  init_pgdata "$@"
fi

shift # "postgres": the real binary, first on PATH
exec postgres "$@"
