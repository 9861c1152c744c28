#!/usr/bin/env bash
# make setup: install the Python environment and every real component the tests and the demo use.
# Idempotent: each step writes a stamp naming what it installed and is skipped when the stamp
# matches. Products live under .cache/ (project-local, git-ignored); downloads are kept in the
# usual per-user caches (uv, ~/.m2, Go) plus $SIGNALSTACK_DOWNLOAD_CACHE, so a fresh clone on a
# machine that has run this before only re-links and re-extracts.
#
#   scripts/setup.sh [step ...]     steps: cluster python kafka spark timescaledb prometheus k8s-tools
#                                   docker (the default: all of them, for `make test`; cluster, the
#                                   live cluster's Go build, runs in the background), or demo
#
# `demo` (what `make demo` runs) needs Python 3.11 alone: no root, JDK, Maven or Go. It creates
# .venv with the runtime and the `demo` extra only, and never removes what a full set-up added.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=versions.env
source "$ROOT/scripts/versions.env"
CACHE="$ROOT/.cache"
DL="${SIGNALSTACK_DOWNLOAD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/signalstack}"
mkdir -p "$CACHE" "$DL"

log() { printf '\033[1m[setup %s]\033[0m %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }
stamp_ok() { [ -f "$1/.stamp" ] && [ "$(cat "$1/.stamp")" = "$2" ]; }
stamp() { printf '%s' "$2" >"$1/.stamp"; }
need() { command -v "$1" >/dev/null 2>&1 || die "'$1' is required: $2"; }

apt_ready=0
apt_install() { # apt_install PKG... : Debian packages on the host (we are root on every machine)
  local missing=()
  for p in "$@"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" = 0 ] || die "need root to apt-get install ${missing[*]}"
  if [ $apt_ready = 0 ]; then apt-get update -qq; apt_ready=1; fi
  log "apt-get install ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Maven Central's address, read from Maven's own super-POM so no mirror host is hard-coded here.
maven_central() {
  local jar
  jar=$(ls /usr/share/maven/lib/maven-model-builder-*.jar 2>/dev/null | head -n1)
  [ -n "$jar" ] || die "maven is required (apt-get install maven)"
  unzip -p "$jar" org/apache/maven/model/pom-4.0.0.xml | grep -m1 -o '<url>[^<]*</url>' | sed 's/<[^>]*>//g'
}

# Resolve Maven coordinates (with runtime dependencies) into a directory of jars.
maven_fetch() { # maven_fetch OUTDIR POMBODY [extra mvn args]
  local out=$1 body=$2; shift 2
  local work; work=$(mktemp -d)
  cat >"$work/settings.xml" <<XML
<settings><mirrors><mirror><id>central-only</id><mirrorOf>*</mirrorOf><url>$(maven_central)</url></mirror></mirrors></settings>
XML
  cat >"$work/pom.xml" <<XML
<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>
<groupId>signalstack.setup</groupId><artifactId>fetch</artifactId><version>1</version><packaging>pom</packaging>
$body
</project>
XML
  rm -rf "$out.tmp"
  (cd "$work" && mvn -q -B -s settings.xml dependency:copy-dependencies \
      -DoutputDirectory="$out.tmp" -DincludeScope=runtime "$@") >&2 || die "maven resolution failed (see above)"
  rm -rf "$out"; mv "$out.tmp" "$out"; rm -rf "$work"
}

UVBIN="$CACHE/uv/bin/uv"
bootstrap_uv() { # uv itself, from PyPI into a private venv (pinned; nothing system-wide)
  need python3.11 "install CPython 3.11"
  if [ ! -x "$UVBIN" ] || [ "$("$UVBIN" --version | cut -d' ' -f2)" != "$UV_VERSION" ]; then
    log "bootstrapping uv $UV_VERSION"
    rm -rf "$CACHE/uv"; python3.11 -m venv "$CACHE/uv"
    "$CACHE/uv/bin/pip" install -q "uv==$UV_VERSION"
  fi
}

uv_sync() { # uv_sync ARGS... : .venv from uv.lock, exactly the locked versions
  UV_PROJECT_ENVIRONMENT="$ROOT/.venv" "$UVBIN" sync --frozen --compile-bytecode --python python3.11 \
    --quiet --project "$ROOT" "$@"
}

step_python() {
  bootstrap_uv
  log "syncing .venv from uv.lock (extras: spark, demo, train, serve; the dev tools)"
  # train brings PyPI's torch, a CUDA build (~5 GB with its nvidia-* wheels; it runs on CPU):
  # minutes to download on a new machine, seconds from uv's cache after that.
  uv_sync --extra spark --extra demo --extra train --extra serve
}

step_demo() {
  bootstrap_uv
  log "syncing .venv from uv.lock (the runtime and the demo extra)"
  # --inexact: a venv a full set-up made keeps its dev tools and extras.
  uv_sync --extra demo --no-default-groups --inexact
}

step_kafka() {
  local dir="$CACHE/kafka" want="kafka_${SCALA_BINARY}-${KAFKA_VERSION} log4j-${LOG4J_VERSION}"
  stamp_ok "$dir" "$want" && return 0
  need java "install a JDK >= 17 (apt-get install openjdk-17-jre-headless)"
  apt_install maven unzip
  log "resolving Apache Kafka $KAFKA_VERSION broker jars from Maven Central"
  mkdir -p "$dir"
  maven_fetch "$dir/libs" "<dependencies>
  <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_${SCALA_BINARY}</artifactId><version>${KAFKA_VERSION}</version></dependency>
  <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>${KAFKA_VERSION}</version></dependency>
  <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>${LOG4J_VERSION}</version></dependency>
</dependencies>"
  stamp "$dir" "$want"
}

step_spark() {
  local dir="$CACHE/spark-jars" want="spark-sql-kafka-0-10_${SCALA_BINARY}-${SPARK_VERSION} tp-${SPARK_TOKEN_PROVIDER_VERSION}"
  stamp_ok "$dir" "$want" && return 0
  apt_install maven unzip
  log "resolving spark-sql-kafka-0-10_${SCALA_BINARY}:${SPARK_VERSION} from Maven Central"
  mkdir -p "$dir"
  # Only the connector and what PySpark's own jars/ lacks; Spark, Scala and Hadoop come from pyspark.
  maven_fetch "$dir/jars" "<dependencyManagement><dependencies>
  <dependency><groupId>org.apache.spark</groupId><artifactId>spark-token-provider-kafka-0-10_${SCALA_BINARY}</artifactId><version>${SPARK_TOKEN_PROVIDER_VERSION}</version></dependency>
</dependencies></dependencyManagement>
<dependencies>
  <dependency><groupId>org.apache.spark</groupId><artifactId>spark-sql-kafka-0-10_${SCALA_BINARY}</artifactId><version>${SPARK_VERSION}</version></dependency>
</dependencies>" \
    -DincludeArtifactIds="spark-sql-kafka-0-10_${SCALA_BINARY},spark-token-provider-kafka-0-10_${SCALA_BINARY},kafka-clients,commons-pool2"
  stamp "$dir" "$want"
}

debian_mirror() { # the host's own Debian mirror (from its apt sources), unless DEBIAN_MIRROR is set
  if [ -n "${DEBIAN_MIRROR:-}" ]; then echo "$DEBIAN_MIRROR"; return; fi
  local m
  m=$(grep -hoE '^URIs:\s*\S+' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' | grep -v security | head -n1)
  [ -n "$m" ] || m=$(grep -hoE '^deb\s+\S+' /etc/apt/sources.list 2>/dev/null | awk '{print $2}' | grep -v security | head -n1)
  [ -n "$m" ] || die "cannot find a Debian mirror in the apt sources; set DEBIAN_MIRROR"
  echo "$m"
}

step_timescaledb() {
  local dir="$CACHE/timescaledb" want="${DEBIAN_SUITE} postgresql-${POSTGRES_MAJOR} timescaledb-${TIMESCALEDB_DEB_VERSION}"
  stamp_ok "$dir" "$want" && return 0
  [ "$(id -u)" = 0 ] || die "TimescaleDB runs in a debootstrap chroot, which needs root"
  apt_install debootstrap zstd
  local tarball="$DL/timescaledb-rootfs-${DEBIAN_SUITE}-pg${POSTGRES_MAJOR}-ts${TIMESCALEDB_DEB_VERSION}.tar.zst"
  rm -rf "$dir"; mkdir -p "$dir"
  if [ -f "$tarball" ]; then
    log "restoring the TimescaleDB chroot from $tarball"
    tar --zstd -xpf "$tarball" -C "$dir"
  else
    log "debootstrap ${DEBIAN_SUITE} with postgresql-${POSTGRES_MAJOR}-timescaledb (~1 min)"
    mkdir -p "$DL/debs"
    debootstrap --variant=minbase --cache-dir="$DL/debs" \
      --include="postgresql-${POSTGRES_MAJOR},postgresql-${POSTGRES_MAJOR}-timescaledb" \
      "$DEBIAN_SUITE" "$dir/rootfs" "$(debian_mirror)" >"$dir/debootstrap.log" 2>&1 \
      || { tail -n 20 "$dir/debootstrap.log" >&2; die "debootstrap failed (log: $dir/debootstrap.log)"; }
    chroot "$dir/rootfs" apt-get clean
    local got
    got=$(chroot "$dir/rootfs" dpkg-query -W -f='${Version}' "postgresql-${POSTGRES_MAJOR}-timescaledb")
    case "$got" in "${TIMESCALEDB_DEB_VERSION}"*) ;; *) die "expected timescaledb ${TIMESCALEDB_DEB_VERSION}, the suite has $got";; esac
    log "caching the chroot as $tarball"
    tar --zstd -cpf "$tarball.tmp" -C "$dir" rootfs && mv "$tarball.tmp" "$tarball"
  fi
  [ -x "$dir/rootfs/usr/lib/postgresql/${POSTGRES_MAJOR}/bin/postgres" ] || die "postgres missing from the chroot"
  stamp "$dir" "$want"
}

step_prometheus() {
  local dir="$CACHE/prometheus"
  local ver; ver=$( (apt-cache policy prometheus 2>/dev/null | awk '/Candidate:/{print $2}') || true)
  if [ -z "$ver" ] || [ "$ver" = "(none)" ]; then apt-get update -qq; apt_ready=1
    ver=$(apt-cache policy prometheus | awk '/Candidate:/{print $2}'); fi
  stamp_ok "$dir" "prometheus $ver" && return 0
  log "fetching Debian's prometheus $ver (extracted, never started as a system service)"
  rm -rf "$dir"; mkdir -p "$dir/deb"
  (cd "$dir/deb" && apt-get download -qq "prometheus=$ver") >&2
  dpkg-deb -x "$dir"/deb/prometheus_*.deb "$dir/root"
  mkdir -p "$dir/bin"
  ln -sf ../root/usr/bin/prometheus "$dir/bin/prometheus"
  ln -sf ../root/usr/bin/promtool "$dir/bin/promtool"
  "$dir/bin/promtool" --version >/dev/null || die "promtool does not run"
  rm -rf "$dir/deb"
  stamp "$dir" "prometheus $ver"
}

# go_tool NAME PKG VERSION [LDFLAGS]: `go install PKG@VERSION` into .cache/bin/NAME, skipped when
# its stamp (.cache/bin/.stamp-NAME) matches. Built into a temp dir and moved into place, so the
# old binary keeps working (tests running meanwhile) until the new one is complete.
go_tool() {
  local name=$1 pkg=$2 ver=$3 ldflags=${4:-} dir="$CACHE/bin" tmp
  local want="$pkg@$ver ldflags=$ldflags"
  if [ -x "$dir/$name" ] && [ -f "$dir/.stamp-$name" ] && [ "$(cat "$dir/.stamp-$name")" = "$want" ]; then
    return 0
  fi
  log "go install $pkg@$ver (a cold build takes minutes)"
  tmp=$(mktemp -d "$dir/.build-$name.XXXXXX")
  GOBIN="$tmp" CGO_ENABLED=0 go install -trimpath -ldflags "-s -w $ldflags" "$pkg@$ver" || { rm -rf "$tmp"; return 1; }
  mv -f "$tmp/$name" "$dir/$name"
  rm -rf "$tmp"
  printf '%s' "$want" >"$dir/.stamp-$name"
}

step_k8s_tools() {
  mkdir -p "$CACHE/bin"
  need go "install Go (https://go.dev/doc/install)"
  # -X stamps the release version that `go install` would otherwise leave as "v4.3" (Helm's
  # internal default) or "development"; the paths are the ones upstream's Makefiles use.
  go_tool helm helm.sh/helm/v4/cmd/helm "$HELM_VERSION" \
    "-X helm.sh/helm/v4/internal/version.version=${HELM_VERSION}"
  go_tool kubeconform github.com/yannh/kubeconform/cmd/kubeconform "$KUBECONFORM_VERSION" \
    "-X main.version=${KUBECONFORM_VERSION}"
  # actionlint checks .github/workflows (the users' CI); it reads its version from the module,
  # and checks each step's `run:` script with shellcheck (Debian's), which also checks manifests/*.sh.
  go_tool actionlint github.com/rhysd/actionlint/cmd/actionlint "$ACTIONLINT_VERSION"
  apt_install shellcheck
  rm -f "$CACHE/bin/.stamp" # the one stamp of the helm 3 step, before each tool had its own
}

step_docker() {
  # Debian's docker.io (dockerd 20.10, containerd, runc) and the base image's root filesystem
  # (debootstrap, cached as a tarball in the download cache). The daemon itself is started by
  # `make images` or the image tests (scripts/docker.sh; docs/components/images.md).
  bash "$ROOT/scripts/docker.sh" install
  bash "$ROOT/scripts/docker.sh" rootfs
}

step_cluster() {
  # The live cluster's binaries (scripts/cluster.sh build: Kubernetes, etcd and CoreDNS from the
  # Go module proxy, ~7 min cold on 2 cores, once per version). `make cluster-up` and the cluster
  # test start it; here it is only built.
  need go "install Go (https://go.dev/doc/install)"
  bash "$ROOT/scripts/cluster.sh" build
}

main() {
  local steps=("$@")
  [ ${#steps[@]} -gt 0 ] || steps=(cluster python kafka spark timescaledb prometheus k8s-tools docker)
  local t0=$SECONDS s bg=""
  # The cluster's Go build is CPU-bound, the other steps mostly download: it runs alongside them.
  if [ "${steps[0]}" = cluster ] && [ ${#steps[@]} -gt 1 ]; then
    steps=("${steps[@]:1}")
    mkdir -p "$DL/k8s"
    (step_cluster >"$DL/k8s/build.log" 2>&1) &
    bg=$!
    log "cluster binaries building in the background (log: $DL/k8s/build.log)"
  fi
  for s in "${steps[@]}"; do
    local t=$SECONDS
    "step_${s//-/_}"
    log "$s ready ($((SECONDS - t)) s)"
  done
  if [ -n "$bg" ]; then
    wait "$bg" || { tail -n 30 "$DL/k8s/build.log" >&2; die "building the cluster's binaries failed"; }
    log "cluster ready (binaries; waited $((SECONDS - t0)) s in all)"
  fi
  log "set-up complete in $((SECONDS - t0)) s"
}
main "$@"
