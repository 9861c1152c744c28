#!/usr/bin/env bash
# Container images, built and run on machines with no registry to pull from
# (docs/components/images.md). Every command is idempotent.
#
#   scripts/docker.sh install          Debian's docker.io and debootstrap (apt, root), when missing
#   scripts/docker.sh rootfs           the base images' root filesystems: `debootstrap --variant=minbase`
#                                      of each Debian release the Dockerfile names, cached as tarballs
#   scripts/docker.sh host             print a DOCKER_HOST whose daemon answers; exit 1 if none does
#   scripts/docker.sh start            start the private daemon unless one answers; print DOCKER_HOST
#   scripts/docker.sh stop             stop the private daemon (the one `start` started), if it runs
#   scripts/docker.sh base             `docker import` each rootfs under the Dockerfile's base image
#                                      names (debian:bookworm-slim; debian:trixie-slim for timescaledb)
#                                      when the daemon lacks it
#   scripts/docker.sh build [TARGET…]  build targets (default: all) as signalstack/TARGET:$IMAGE_TAG
#   scripts/docker.sh images           install, start, base, build: what `make images` runs
#
# The private daemon: `dockerd --bridge=none --iptables=false` with its own data root, exec root,
# socket and pidfile under $SIGNALSTACK_DOCKER_DIR (default: the per-user download cache, so a new
# clone on the same machine finds its images and build cache). Containers run with
# `--network none` or host networking and builds with `--network host`: no bridge is created.
# Builds use BuildKit (RUN --mount cache mounts): Debian's docker client 20.10 has it built in;
# a newer client needs its buildx plugin (DOCKER=/path/to/docker overrides the choice).
#
# Environment: IMAGE_TAG (dev), IMAGE_PREFIX (signalstack/), DOCKER_HOST (an existing daemon),
# SIGNALSTACK_DOCKER_DIR, DEBIAN_MIRROR (the debootstrap mirror; default: the host's apt source),
# BUILD_LOG_DIR (each target's build log; default the state dir), EXTRA_CA_DIR (extra CA
# certificates the builder stages trust, copied into ca-certificates/ of the build context;
# default the host's /usr/local/share/ca-certificates).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DL="${SIGNALSTACK_DOWNLOAD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/signalstack}"
STATE="${SIGNALSTACK_DOCKER_DIR:-$DL/docker}"
SOCK="$STATE/docker.sock"
PIDFILE="$STATE/docker.pid"
IMAGE_TAG="${IMAGE_TAG:-dev}"
IMAGE_PREFIX="${IMAGE_PREFIX:-signalstack/}"
TARGETS=(ingest stream sink training serving backfill drift timescaledb)

log() { printf '\033[1m[docker %s]\033[0m %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf '[docker] ERROR: %s\n' "$*" >&2; exit 1; }

# The base images the Dockerfile names (ARG BASE_IMAGE=debian:<release>-slim for the Python images,
# ARG TIMESCALEDB_BASE_IMAGE=debian:<release>-slim for timescaledb) and their releases.
base_image() { sed -n 's/^ARG BASE_IMAGE=//p' "$ROOT/Dockerfile" | head -n1; }
timescaledb_base_image() { sed -n 's/^ARG TIMESCALEDB_BASE_IMAGE=//p' "$ROOT/Dockerfile" | head -n1; }
base_images() { base_image; timescaledb_base_image; }
suite_of() { local b=${1#*:}; echo "${b%-slim}"; }
base_suite() { suite_of "$(base_image)"; }

docker_cli() { # a client that builds with BuildKit without pulling anything
  if [ -n "${DOCKER:-}" ]; then echo "$DOCKER"; return; fi
  if [ -x /usr/bin/docker ]; then echo /usr/bin/docker; return; fi # Debian's 20.10: BuildKit built in
  command -v docker || die "no docker client: run scripts/docker.sh install"
}

answers() { # answers HOST: the daemon at HOST replies within a few seconds
  DOCKER_HOST=$1 timeout 10 "$(docker_cli)" version --format '{{.Server.Version}}' >/dev/null 2>&1
}

cmd_install() {
  local missing=() p
  for p in docker.io debootstrap zstd; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" = 0 ] || die "need root to apt-get install ${missing[*]}"
  log "apt-get install ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

debian_mirror() { # the host's own Debian mirror (from its apt sources), unless DEBIAN_MIRROR is set
  if [ -n "${DEBIAN_MIRROR:-}" ]; then echo "$DEBIAN_MIRROR"; return; fi
  local m
  m=$(grep -hoE '^URIs:\s*\S+' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' | grep -v security | head -n1)
  [ -n "$m" ] || m=$(grep -hoE '^deb\s+\S+' /etc/apt/sources.list 2>/dev/null | awk '{print $2}' | grep -v security | head -n1)
  [ -n "$m" ] || die "cannot find a Debian mirror in the apt sources; set DEBIAN_MIRROR"
  echo "$m"
}

rootfs_tarball() { echo "$DL/rootfs-${1:-$(base_suite)}-minbase.tar.zst"; } # [SUITE]

cmd_rootfs() { # every release the Dockerfile's base images name
  local image
  for image in $(base_images); do rootfs_of "$(suite_of "$image")"; done
}

rootfs_of() { # SUITE: its minbase root filesystem as a tarball, unless cached
  local suite=$1 tarball dir
  tarball=$(rootfs_tarball "$suite")
  [ -f "$tarball" ] && return 0
  [ "$(id -u)" = 0 ] || die "debootstrap needs root"
  command -v debootstrap >/dev/null || die "debootstrap missing: run scripts/docker.sh install"
  mkdir -p "$DL/debs"
  dir=$(mktemp -d "$DL/rootfs.XXXXXX")
  log "debootstrap --variant=minbase $suite (~1 min; cached as $tarball)"
  debootstrap --variant=minbase --cache-dir="$DL/debs" "$suite" "$dir/rootfs" "$(debian_mirror)" \
    >"$dir/debootstrap.log" 2>&1 \
    || { tail -n 20 "$dir/debootstrap.log" >&2; die "debootstrap failed (log: $dir/debootstrap.log)"; }
  # What the upstream -slim images add: no docs, man pages or locales from later apt installs,
  # and no package lists or .debs left in a layer.
  cat >"$dir/rootfs/etc/dpkg/dpkg.cfg.d/slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
EOF
  cat >"$dir/rootfs/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";
EOF
  chroot "$dir/rootfs" apt-get clean
  rm -rf "$dir/rootfs/var/lib/apt/lists/"* "$dir/rootfs/var/log/"*.log
  tar --zstd -C "$dir/rootfs" --numeric-owner -cpf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
  rm -rf "$dir"
}

cmd_host() { # an answering daemon: $DOCKER_HOST, the system socket, then ours
  local h
  for h in ${DOCKER_HOST:+"$DOCKER_HOST"} unix:///var/run/docker.sock "unix://$SOCK"; do
    if answers "$h"; then echo "$h"; return 0; fi
  done
  return 1
}

cmd_start() {
  local h
  if h=$(cmd_host); then echo "$h"; return 0; fi
  [ "$(id -u)" = 0 ] || die "dockerd needs root"
  command -v dockerd >/dev/null || die "dockerd missing: run scripts/docker.sh install"
  mkdir -p "$STATE/data" "$STATE/exec"
  exec 9>"$STATE/start.lock"
  flock -w 120 9 || die "another start holds $STATE/start.lock"
  if answers "unix://$SOCK"; then echo "unix://$SOCK"; return 0; fi # started meanwhile
  if [ -f "$PIDFILE" ] && ! kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then rm -f "$PIDFILE"; fi
  # BuildKit's cache (uv's downloads, superseded layers) is collected beyond 8 GB.
  printf '%s\n' '{"builder": {"gc": {"enabled": true, "defaultKeepStorage": "8GB"}}}' >"$STATE/daemon.json"
  log "starting dockerd (data root $STATE/data, socket $SOCK)"
  # setsid: the daemon outlives this script and the caller's process group.
  setsid dockerd --bridge=none --iptables=false --ip-masq=false \
    --data-root "$STATE/data" --exec-root "$STATE/exec" --pidfile "$PIDFILE" \
    --config-file "$STATE/daemon.json" \
    -H "unix://$SOCK" >>"$STATE/dockerd.log" 2>&1 </dev/null 9>&- &
  for _ in $(seq 1 120); do
    if answers "unix://$SOCK"; then echo "unix://$SOCK"; return 0; fi
    kill -0 $! 2>/dev/null || { tail -n 20 "$STATE/dockerd.log" >&2; die "dockerd exited (log: $STATE/dockerd.log)"; }
    sleep 0.5
  done
  die "dockerd did not answer within 60 s (log: $STATE/dockerd.log)"
}

cmd_stop() {
  [ -f "$PIDFILE" ] || return 0
  local pid; pid=$(cat "$PIDFILE")
  kill -0 "$pid" 2>/dev/null || { rm -f "$PIDFILE"; return 0; }
  log "stopping dockerd $pid"
  kill -TERM "$pid"
  for _ in $(seq 1 60); do
    if ! kill -0 "$pid" 2>/dev/null; then
      # dockerd leaves its default network namespace bind-mounted in the exec root
      if mountpoint -q "$STATE/exec/netns/default" 2>/dev/null; then
        umount "$STATE/exec/netns/default" || log "could not unmount $STATE/exec/netns/default"
      fi
      return 0
    fi
    sleep 0.5
  done
  die "dockerd $pid still runs 30 s after SIGTERM"
}

with_daemon() { # DOCKER_HOST for the commands below: an answering daemon or an error
  DOCKER_HOST=$(cmd_host) || die "no docker daemon answers: run scripts/docker.sh start"
  export DOCKER_HOST
}

cmd_base() {
  with_daemon
  local image suite
  for image in $(base_images); do
    "$(docker_cli)" image inspect "$image" >/dev/null 2>&1 && continue
    suite=$(suite_of "$image")
    rootfs_of "$suite"
    log "docker import $(rootfs_tarball "$suite") as $image (made here, never pulled)"
    # The upstream image's config: PATH and `bash` as the command.
    zstd -dc "$(rootfs_tarball "$suite")" | "$(docker_cli)" import \
      -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      -c 'CMD ["bash"]' - "$image" >/dev/null
  done
}

extra_cas() { # the host's extra CAs (EXTRA_CA_DIR) into the build context's ca-certificates/
  local src="${EXTRA_CA_DIR:-/usr/local/share/ca-certificates}" f
  [ -d "$src" ] || return 0
  while IFS= read -r -d '' f; do
    cmp -s "$f" "$ROOT/ca-certificates/$(basename "$f")" || cp "$f" "$ROOT/ca-certificates/"
  done < <(find "$src" -maxdepth 2 -name '*.crt' -print0)
}

cmd_build() {
  with_daemon
  extra_cas
  local targets=("$@") t cli logdir
  [ ${#targets[@]} -gt 0 ] || targets=("${TARGETS[@]}")
  cli=$(docker_cli)
  logdir="${BUILD_LOG_DIR:-$STATE/logs}"
  mkdir -p "$logdir"
  for t in "${targets[@]}"; do
    local t0=$SECONDS
    log "building ${IMAGE_PREFIX}$t:$IMAGE_TAG (log: $logdir/build-$t.log)"
    if ! DOCKER_BUILDKIT=1 "$cli" build --network host --progress plain --target "$t" \
        -t "${IMAGE_PREFIX}$t:$IMAGE_TAG" "$ROOT" >"$logdir/build-$t.log" 2>&1; then
      tail -n 40 "$logdir/build-$t.log" >&2
      die "building $t failed (log: $logdir/build-$t.log)"
    fi
    log "$t built in $((SECONDS - t0)) s"
  done
  # Earlier builds' images that lost their tag to these ones.
  "$cli" image prune -f --filter "label=org.opencontainers.image.vendor=signalstack" >/dev/null
}

cmd_images() {
  cmd_install
  local running=1
  cmd_host >/dev/null || running=0
  cmd_start >/dev/null
  cmd_base
  cmd_build "$@"
  [ $running = 1 ] || log "the private dockerd keeps running (DOCKER_HOST=unix://$SOCK); scripts/docker.sh stop stops it"
}

cmd=${1:-images}
[ $# -gt 0 ] && shift
case "$cmd" in
  install | rootfs | host | start | stop | base | build | images) "cmd_$cmd" "$@" ;;
  *) die "unknown command '$cmd' (install, rootfs, host, start, stop, base, build, images)" ;;
esac
