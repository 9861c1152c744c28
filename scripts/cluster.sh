#!/usr/bin/env bash
# A real single-node Kubernetes cluster on this machine (docs/components/cluster.md): the chart's
# integration test, and `make cluster-up && make deploy` for trying the chart where kind cannot
# start (its node image cannot be pulled). Everything is built or installed from the registries
# this machine reaches: the Kubernetes binaries, etcd and CoreDNS from the Go module proxy,
# containerd, runc and the CNI plugins from Debian, our images from `make images`.
#
#   scripts/cluster.sh build     the binaries (once per version, cached under $DL/k8s/<version>)
#   scripts/cluster.sh up        start etcd, the control plane, containerd, the kubelet, kube-proxy
#                                and CoreDNS; load our images; print the kubeconfig's path
#   scripts/cluster.sh images    (re)load signalstack/*:$IMAGE_TAG from docker into containerd
#   scripts/cluster.sh down      stop everything and remove what `up` made (processes, mounts,
#                                addresses, routes, iptables chains, cgroups, directories)
#   scripts/cluster.sh purge     down, and the image cache (containerd's content store) too
#   scripts/cluster.sh status    exit 0 when the cluster answers and its node is Ready
#   scripts/cluster.sh env       print `export KUBECONFIG=…` for a shell
#   scripts/cluster.sh kafka     a Kafka broker on the bridge's address (the ci profile's bootstrap)
#   scripts/cluster.sh volumes D the PersistentVolumes of the ci profile's claims (no provisioner
#                                here): model bundles from D, the stream job's checkpoints
#   scripts/cluster.sh deploy    `make deploy` here: images, kafka, models (demo-output/models),
#                                then `helm upgrade --install` with charts/signalstack/values-ci.yaml
#
# Network safety (LOCAL-CLUSTER.md): nothing may leave the machine. `up` adds `unreachable`
# routes for the pod and service ranges, gives the CNI bridge a host address without making it
# the pods' default gateway, names the node by an address on `lo`, and refuses to start unless
# `ip route get` confirms all of it.
#
# Environment: SIGNALSTACK_CLUSTER_DIR (the work dir: state, logs, kubeconfig; default
# $DL/cluster), IMAGE_TAG (dev), CLUSTER_IMAGES (the targets to load; default: every target but
# training), POD_CIDR, SERVICE_CIDR, NODE_IP.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=versions.env
source "$ROOT/scripts/versions.env"
DL="${SIGNALSTACK_DOWNLOAD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/signalstack}"
BIN="$DL/k8s/bin"
COMPONENTS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)

log() { printf '\033[1m[cluster %s]\033[0m %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf '[cluster] ERROR: %s\n' "$*" >&2; exit 1; }

# ---- build ------------------------------------------------------------------------------------
# `go install k8s.io/kubernetes/cmd/x@v` is refused (the module's go.mod replaces its staging
# modules with directories), so a throw-away module requires k8s.io/kubernetes, pins each staging
# module to its published v0.<minor>.<patch> twin, keeps Kubernetes' godebug line, and builds the
# commands with the version stamped the way Kubernetes' own build does (`hack/lib/version.sh`).
go_module_file() { # go_module_file MODULE@VERSION FIELD: the path `go mod download -json` gives
  # (FIELD GoMod: its go.mod, Dir: its extracted tree), downloaded from the module proxy if needed
  (cd "$DL" && go mod download -json "$1") | sed -n "s/^\s*\"$2\": \"\(.*\)\",\$/\1/p"
}

k8s_module() { # k8s_module DIR: the throw-away module in DIR
  local dir=$1 gomod staging="v0.${KUBERNETES_VERSION#v1.}"
  gomod=$(go_module_file "k8s.io/kubernetes@$KUBERNETES_VERSION" GoMod)
  [ -f "$gomod" ] || die "cannot download k8s.io/kubernetes@$KUBERNETES_VERSION from the Go module proxy"
  {
    echo "module signalstack.local/k8s-build"
    echo
    grep -E '^go [0-9]' "$gomod"
    grep -E '^godebug ' "$gomod" || true
    echo
    echo "require k8s.io/kubernetes $KUBERNETES_VERSION"
    echo
    grep -E '^\s+k8s.io/\S+ => ./staging/' "$gomod" | awk -v v="$staging" '{print "replace " $1 " => " $1 " " v}'
  } >"$dir/go.mod"
  {
    echo "//go:build tools"
    echo
    echo "package tools"
    echo
    echo "import ("
    local c
    for c in "${COMPONENTS[@]}"; do echo "	_ \"k8s.io/kubernetes/cmd/$c\""; done
    echo ")"
  } >"$dir/tools.go"
}

built() { [ -f "$BIN/.stamp-$1" ] && [ "$(cat "$BIN/.stamp-$1")" = "$2" ]; }

build_kubernetes() { # the six Kubernetes commands into DIR
  local out=$1 work=$2 minor=${KUBERNETES_VERSION#v1.} c pkg ldflags="-s -w"
  minor=${minor%%.*}
  mkdir -p "$work/k8s"
  k8s_module "$work/k8s"
  log "resolving k8s.io/kubernetes $KUBERNETES_VERSION and its staging modules"
  (cd "$work/k8s" && GOFLAGS=-mod=mod GOSUMDB=off go mod tidy) >"$work/k8s-tidy.log" 2>&1 \
    || { tail -n 20 "$work/k8s-tidy.log" >&2; die "go mod tidy failed (log: $work/k8s-tidy.log)"; }
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  for c in "${COMPONENTS[@]}"; do
    local t=$SECONDS
    log "go build $c $KUBERNETES_VERSION (a cold kube-apiserver takes 3-5 min on 2 cores)"
    (cd "$work/k8s" && GOCACHE="$work/gocache" GOFLAGS="-trimpath -mod=mod" GOSUMDB=off CGO_ENABLED=0 \
      go build -ldflags "$ldflags" -o "$out/$c" "k8s.io/kubernetes/cmd/$c") || die "building $c failed"
    log "$c built ($((SECONDS - t)) s)"
  done
  "$out/kubectl" version --client 2>/dev/null | grep -q "$KUBERNETES_VERSION" \
    || die "kubectl does not report $KUBERNETES_VERSION"
}

build_etcd() { # etcd's server module replaces its sibling modules with directories too
  local out=$1 work=$2
  log "go build go.etcd.io/etcd/server/v3 $ETCD_VERSION"
  mkdir -p "$work/etcd"
  printf 'module signalstack.local/etcd-build\n\ngo 1.24\n\nrequire go.etcd.io/etcd/server/v3 %s\n' "$ETCD_VERSION" >"$work/etcd/go.mod"
  printf '//go:build tools\n\npackage tools\n\nimport _ "go.etcd.io/etcd/server/v3"\n' >"$work/etcd/tools.go"
  (cd "$work/etcd" && GOFLAGS=-mod=mod GOSUMDB=off go mod tidy) >"$work/etcd-tidy.log" 2>&1 \
    || { tail -n 20 "$work/etcd-tidy.log" >&2; die "go mod tidy (etcd) failed"; }
  (cd "$work/etcd" && GOCACHE="$work/gocache" GOFLAGS="-trimpath -mod=mod" GOSUMDB=off CGO_ENABLED=0 \
    go build -ldflags "-s -w" -o "$out/etcd" go.etcd.io/etcd/server/v3) || die "building etcd failed"
  "$out/etcd" --version | grep -q "${ETCD_VERSION#v}" || die "etcd does not report $ETCD_VERSION"
}

build_coredns() {
  local out=$1 work=$2
  log "go install github.com/coredns/coredns $COREDNS_VERSION"
  GOBIN="$out" GOCACHE="$work/gocache" GOFLAGS=-trimpath CGO_ENABLED=0 \
    go install -ldflags "-s -w" "github.com/coredns/coredns@$COREDNS_VERSION" || die "building CoreDNS failed"
}

cmd_build() { # each group once per version (its stamp); binaries, never the ~9 GB build cache
  local t0=$SECONDS group ver work out
  for group in kubernetes etcd coredns; do
    case $group in
      kubernetes) ver=$KUBERNETES_VERSION ;; etcd) ver=$ETCD_VERSION ;; coredns) ver=$COREDNS_VERSION ;;
    esac
    built "$group" "$ver" && continue
    command -v go >/dev/null || die "Go is required to build the cluster's binaries"
    work="$DL/k8s/build"; out="$work/out"
    rm -rf "$work"; mkdir -p "$out" "$BIN"
    "build_$group" "$out" "$work"
    mv -f "$out"/* "$BIN/"
    printf '%s' "$ver" >"$BIN/.stamp-$group"
    rm -rf "$work"
  done
  [ $((SECONDS - t0)) -lt 2 ] || log "binaries ready in $BIN ($((SECONDS - t0)) s)"
}


# ---- the cluster ------------------------------------------------------------------------------
W="${SIGNALSTACK_CLUSTER_DIR:-$DL/cluster}"
KUBECONFIG_FILE="$W/kubeconfig"
NODE_NAME=signalstack-node
# The addresses: the node on `lo` (a /32: the kubelet refuses a loopback node IP), the pods on a
# bridge of our own, the Services' virtual IPs. Both ranges are `unreachable` beyond what a local
# interface holds, so nothing addressed into them can follow the default route out.
NODE_IP="${NODE_IP:-10.216.0.1}"
POD_CIDR="${POD_CIDR:-10.217.0.0/16}"
POD_SUBNET="${POD_SUBNET:-10.217.0.0/24}"
BRIDGE_IP="${BRIDGE_IP:-10.217.0.1}"
SERVICE_CIDR="${SERVICE_CIDR:-10.218.0.0/24}"
API_SERVICE_IP="${API_SERVICE_IP:-10.218.0.1}"
BRIDGE=ssk0
ETCD_PORT=23790
APISERVER="https://$NODE_IP:6443"
CTR_SOCK="$W/containerd/containerd.sock"
# containerd's content store and snapshots outlive the cluster: the images loaded into it are a
# cache (like docker's data root), so a second `up` loads only what `make images` changed.
# `down` removes everything else; `scripts/cluster.sh purge` removes this too.
CTR_ROOT="$DL/k8s/containerd"
IMAGE_TAG="${IMAGE_TAG:-dev}"
IMAGE_PREFIX="${IMAGE_PREFIX:-signalstack/}"
PAUSE_IMAGE="${IMAGE_PREFIX}pause:local"

kubectl() { "$BIN/kubectl" --kubeconfig "$KUBECONFIG_FILE" "$@"; }
ctr() { command ctr --address "$CTR_SOCK" --namespace k8s.io "$@"; }
pidfile() { echo "$W/run/$1.pid"; }
running() { local p; p=$(cat "$(pidfile "$1")" 2>/dev/null) && kill -0 "$p" 2>/dev/null; }

start_bg() { # start_bg NAME CMD...: a daemon (its own process group) logging to $W/logs/NAME.log
  local name=$1; shift
  running "$name" && die "$name already runs (pid $(cat "$(pidfile "$name")")): scripts/cluster.sh down first"
  setsid "$@" >>"$W/logs/$name.log" 2>&1 </dev/null &
  echo $! >"$(pidfile "$name")"
}

wait_for() { # wait_for WHAT SECONDS CMD...: until CMD succeeds, or die naming WHAT and the logs
  local what=$1 limit=$2 t0=$SECONDS; shift 2
  until "$@" >/dev/null 2>&1; do
    [ $((SECONDS - t0)) -lt "$limit" ] || die "$what not ready after ${limit} s (logs: $W/logs)"
    sleep 0.5
  done
}

debian_tool() { # debian_tool PKG: Debian's PKG extracted under $DL/k8s/debs/PKG-VERSION; prints the dir
  local pkg=$1 ver dir
  ver=$(apt-cache policy "$pkg" 2>/dev/null | awk '/Candidate:/{print $2}')
  if [ -z "$ver" ] || [ "$ver" = "(none)" ]; then
    apt-get update -qq >&2
    ver=$(apt-cache policy "$pkg" | awk '/Candidate:/{print $2}')
  fi
  dir="$DL/k8s/debs/$pkg-$ver"
  if [ ! -f "$dir/.stamp" ]; then
    rm -rf "$dir"; mkdir -p "$dir/deb"
    (cd "$dir/deb" && apt-get download -qq -o APT::Sandbox::User=root "$pkg=$ver") >&2 || die "apt-get download $pkg=$ver failed"
    dpkg-deb -x "$dir"/deb/*.deb "$dir/root"
    rm -rf "$dir/deb"; touch "$dir/.stamp"
  fi
  echo "$dir/root"
}

pki() { # the cluster's CA and certificates (openssl); one admin identity (system:masters) serves
  # every control-plane component, the kubelet's client side and the tests
  local d="$W/pki"
  mkdir -p "$d"
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=signalstack-cluster-ca" \
    -keyout "$d/ca.key" -out "$d/ca.crt" 2>/dev/null
  cert() { # cert NAME SUBJ [SANS]
    openssl req -newkey rsa:2048 -nodes -subj "$2" -keyout "$d/$1.key" -out "$d/$1.csr" 2>/dev/null
    local ext="$d/$1.ext"
    printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n' >"$ext"
    [ -z "${3:-}" ] || printf 'subjectAltName=%s\n' "$3" >>"$ext"
    openssl x509 -req -in "$d/$1.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial \
      -days 30 -extfile "$ext" -out "$d/$1.crt" 2>/dev/null
    rm -f "$d/$1.csr" "$ext"
  }
  cert apiserver "/CN=kube-apiserver" \
    "IP:$NODE_IP,IP:$API_SERVICE_IP,IP:127.0.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost"
  cert admin "/O=system:masters/CN=signalstack-admin"
  cert kubelet "/CN=$NODE_NAME" "IP:$NODE_IP"
  openssl genrsa -out "$d/sa.key" 2048 2>/dev/null
  openssl rsa -in "$d/sa.key" -pubout -out "$d/sa.pub" 2>/dev/null
  "$BIN/kubectl" config set-cluster signalstack --server "$APISERVER" --certificate-authority "$d/ca.crt" \
    --embed-certs --kubeconfig "$KUBECONFIG_FILE" >/dev/null
  "$BIN/kubectl" config set-credentials admin --client-certificate "$d/admin.crt" --client-key "$d/admin.key" \
    --embed-certs --kubeconfig "$KUBECONFIG_FILE" >/dev/null
  "$BIN/kubectl" config set-context signalstack --cluster signalstack --user admin --kubeconfig "$KUBECONFIG_FILE" >/dev/null
  "$BIN/kubectl" config use-context signalstack --kubeconfig "$KUBECONFIG_FILE" >/dev/null
  chmod 600 "$KUBECONFIG_FILE" "$d"/*.key
}

# kernel settings the kubelet (its kernel defaults) and the bridge (forwarding) change: restored by down
SYSCTLS=(kernel.panic kernel.panic_on_oops vm.overcommit_memory vm.panic_on_oom
  kernel.keys.root_maxkeys kernel.keys.root_maxbytes net.ipv4.ip_forward)
FORWARD_CHAIN=SIGNALSTACK-CLUSTER

made() { touch "$W/run/made-$1"; } # down undoes only what up marked as made
was_made() { [ -f "$W/run/made-$1" ]; }

network_up() {
  # Another Kubernetes node on this host, or our ranges in use: refuse rather than share.
  [ -z "$(kube_chains)" ] || die "KUBE-* iptables chains exist: another kube-proxy or kubelet runs here"
  ! find /sys/fs/cgroup -maxdepth 2 -name 'kubepods*' | grep -q . \
    || die "kubepods cgroups exist: another kubelet runs here"
  ip -o link show "$BRIDGE" >/dev/null 2>&1 && die "a bridge $BRIDGE exists already: scripts/cluster.sh down first"
  local cidr
  for cidr in "$POD_CIDR" "$SERVICE_CIDR" "$NODE_IP/32"; do
    [ -z "$(ip -o route show table all root "$cidr" 2>/dev/null)" ] || die "routes within $cidr exist already"
  done
  # What exists before, so that `down` removes only what `up` made.
  [ -e /var/log/containers ] || made var-log-containers
  [ -e /var/lib/cni ] || made var-lib-cni
  [ -e /var/lib/kubelet ] || made var-lib-kubelet # its device-plugins dir is hard-wired there
  [ -e /run/netns ] || made run-netns
  { ls -d /var/run/netns/cni-* 2>/dev/null || true; } >"$W/run/netns-before"
  { ls /run/containerd/s 2>/dev/null || true; } >"$W/run/shims-before"
  kube_chains >"$W/run/chains-before"
  local k
  for k in "${SYSCTLS[@]}"; do echo "$k $(sysctl -n "$k")"; done >"$W/run/sysctl-before"
  ip route add unreachable "$POD_CIDR" && made route-pods
  ip route add unreachable "$SERVICE_CIDR" && made route-services
  ip addr add "$NODE_IP/32" dev lo && made node-ip
  ip link add "$BRIDGE" type bridge && made bridge
  ip addr add "$BRIDGE_IP/${POD_SUBNET#*/}" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  # The host forwards for the pods (pod → Service → pod on the bridge), never off the bridge.
  iptables -N "$FORWARD_CHAIN" && made forward-chain
  iptables -A "$FORWARD_CHAIN" -i "$BRIDGE" ! -o "$BRIDGE" -j DROP
  iptables -I FORWARD 1 -j "$FORWARD_CHAIN"
  network_check
}

route_of() { ip -o route get "$1" 2>&1 || true; }
network_check() { # refuse to go on unless nothing in the pod or service ranges can leave
  local r probe
  # a pod address beyond this node's subnet, and Service addresses (virtual: kube-proxy DNATs them)
  for probe in "${POD_CIDR%.*.*}.200.7" "$API_SERVICE_IP" "${SERVICE_CIDR%.*}.77"; do
    r=$(route_of "$probe")
    case "$r" in *unreachable*|*"No route"*) ;; *) die "unsafe: $probe would be routed ($r)";; esac
  done
  r=$(route_of "${POD_SUBNET%.*}.77")
  case "$r" in *" dev $BRIDGE "*) ;; *) die "unsafe: a pod address is not on $BRIDGE ($r)";; esac
  r=$(route_of "$NODE_IP")
  case "$r" in local*" dev lo "*) ;; *) die "unsafe: the node IP $NODE_IP is not local ($r)";; esac
  # (in /etc/hosts only: asking the resolver would send the name off the machine)
  grep -qw -- "$NODE_NAME" /etc/hosts && die "unsafe: the node name $NODE_NAME resolves (/etc/hosts)"
  return 0
}

configs() {
  local cni
  cni=$(debian_tool containernetworking-plugins)/usr/lib/cni
  mkdir -p "$W/cni/net.d" "$W/cni/ipam" "$W/kubelet" "$W/pod-logs" "$W/containerd"
  # Pods: an address on our bridge, a route to the Services' range and none by default.
  cat >"$W/cni/net.d/10-signalstack.conflist" <<JSON
{
  "cniVersion": "0.4.0",
  "name": "signalstack",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "isDefaultGateway": false,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$W/cni/ipam",
        "ranges": [[{"subnet": "$POD_SUBNET", "gateway": "$BRIDGE_IP"}]],
        "routes": [{"dst": "$SERVICE_CIDR", "gw": "$BRIDGE_IP"}]
      }
    },
    {"type": "loopback"}
  ]
}
JSON
  # loopback is configured by containerd itself; keep the list to the bridge
  sed -i '/"type": "loopback"/d; s/^    },$/    }/' "$W/cni/net.d/10-signalstack.conflist"
  cat >"$W/containerd/config.toml" <<TOML
version = 2
root = "$CTR_ROOT/root"
state = "$W/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "$CTR_SOCK"
[ttrpc]
  address = "$W/containerd/containerd.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$W/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "docker.io/$PAUSE_IMAGE"
  # root here lacks CAP_SYS_RESOURCE: no negative oom_score_adj for the sandboxes
  restrict_oom_score_adj = true
  enable_selinux = false
  # every image is imported; a pull from docker.io goes to a port nothing listens on, never out
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$W/containerd/certs.d"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$cni"
    conf_dir = "$W/cni/net.d"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        Root = "$W/containerd/runc"
TOML
  mkdir -p "$W/containerd/certs.d/docker.io"
  printf 'server = "http://127.0.0.1:9"\n\n[host."http://127.0.0.1:9"]\n  capabilities = ["pull", "resolve"]\n' \
    >"$W/containerd/certs.d/docker.io/hosts.toml"
  printf '# no upstream resolvers: pods resolve cluster names only (CoreDNS)\n' >"$W/resolv.conf"
  cat >"$W/kubelet/config.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $W/pki/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: $W/pki/kubelet.crt
tlsPrivateKeyFile: $W/pki/kubelet.key
containerRuntimeEndpoint: unix://$CTR_SOCK
cgroupDriver: cgroupfs
failCgroupV1: false
oomScoreAdj: 0
makeIPTablesUtilChains: false
failSwapOn: false
clusterDomain: cluster.local
clusterDNS: [$BRIDGE_IP]
resolvConf: $W/resolv.conf
podLogsDir: $W/pod-logs
maxPods: 60
serializeImagePulls: false
# our images are imported, never pulled: the image garbage collector must never remove them,
# and a busy shared disk must not evict the pods
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
shutdownGracePeriod: 0s
YAML
  cat >"$W/kube-proxy.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clusterCIDR: $POD_CIDR
hostnameOverride: $NODE_NAME
bindAddress: $NODE_IP
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
clientConnection: {kubeconfig: $KUBECONFIG_FILE}
nodePortAddresses: [$NODE_IP/32]
iptables: {localhostNodePorts: false, masqueradeAll: false}
# leave the host's conntrack sysctls alone
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
YAML
  cat >"$W/Corefile" <<CORE
.:53 {
    bind $BRIDGE_IP
    errors
    health 127.0.0.1:18080
    ready 127.0.0.1:18181
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $KUBECONFIG_FILE
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
    # no forward plugin: a name outside the cluster is refused, never asked of a resolver
}
CORE
}

pause_image() { # the sandbox image: one static program that sleeps until signalled
  docker_host
  "$DOCKER" image inspect "$PAUSE_IMAGE" >/dev/null 2>&1 && return 0
  local d; d=$(mktemp -d)
  cat >"$d/pause.go" <<'GO'
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGINT, syscall.SIGTERM)
	<-c
}
GO
  (cd "$d" && printf 'module pause\n\ngo 1.22\n' >go.mod && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o pause .)
  tar -C "$d" -c pause | "$DOCKER" import -c 'ENTRYPOINT ["/pause"]' -c 'USER 65535:65535' - "$PAUSE_IMAGE" >/dev/null
  rm -rf "$d"
}

DOCKER=/usr/bin/docker
docker_host() {
  [ -n "${DOCKER_HOST:-}" ] && return 0
  DOCKER_HOST=$(bash "$ROOT/scripts/docker.sh" start) || die "no docker daemon: scripts/docker.sh start"
  export DOCKER_HOST
}

cluster_images() { # our images, as built by `make images`, into containerd's k8s.io namespace
  local targets=() t
  read -r -a targets <<<"${CLUSTER_IMAGES:-ingest stream sink serving backfill drift timescaledb}"
  docker_host
  pause_image
  local refs=("$PAUSE_IMAGE")
  for t in "${targets[@]}"; do
    "$DOCKER" image inspect "${IMAGE_PREFIX}$t:$IMAGE_TAG" >/dev/null 2>&1 \
      || die "image ${IMAGE_PREFIX}$t:$IMAGE_TAG missing: make images"
    refs+=("${IMAGE_PREFIX}$t:$IMAGE_TAG")
  done
  # skip what containerd holds already at the same image id
  local todo=() ref id have
  for ref in "${refs[@]}"; do
    id=$("$DOCKER" image inspect -f '{{.Id}}' "$ref")
    have=$(ctr images ls "name==docker.io/$ref" 2>/dev/null | awk 'NR>1{print $3}')
    [ -f "$CTR_ROOT/loaded/${ref//[\/:]/_}" ] && [ "$(cat "$CTR_ROOT/loaded/${ref//[\/:]/_}")" = "$id" ] && [ -n "$have" ] && continue
    todo+=("$ref")
  done
  [ ${#todo[@]} -gt 0 ] || { log "images already loaded"; return 0; }
  log "loading ${todo[*]} into containerd"
  mkdir -p "$CTR_ROOT/loaded"
  "$DOCKER" save "${todo[@]}" | ctr images import - >/dev/null \
    || die "ctr images import failed"
  for ref in "${todo[@]}"; do
    "$DOCKER" image inspect -f '{{.Id}}' "$ref" >"$CTR_ROOT/loaded/${ref//[\/:]/_}"
  done
}

crds() { # the operators' CRDs at the pinned versions (none of the operators runs here)
  local dir
  dir=$(go_module_file "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION" Dir)
  [ -d "$dir/example/prometheus-operator-crd" ] || die "prometheus-operator $PROMETHEUS_OPERATOR_VERSION: no CRDs in the module"
  # server-side: KServe's and spark-operator's CRDs exceed the last-applied annotation's limit
  kubectl apply --server-side -f "$dir/example/prometheus-operator-crd" >/dev/null
  python3 "$ROOT/scripts/crds.py" | kubectl apply --server-side -f - >/dev/null
  # (a CRD created a moment ago may have no conditions yet: `kubectl wait` errors, so retry)
  wait_for "the CRDs Established" 90 kubectl wait --for condition=Established crd --all --timeout=5s
}

cmd_up() {
  [ "$(id -u)" = 0 ] || die "the cluster needs root (containerd, the kubelet, the bridge)"
  if ! command -v containerd >/dev/null || ! command -v runc >/dev/null; then
    die "containerd and runc missing: scripts/docker.sh install (Debian's docker.io)"
  fi
  if [ -f "$W/run/up" ]; then
    cmd_status && { log "the cluster runs already (KUBECONFIG=$KUBECONFIG_FILE)"; echo "$KUBECONFIG_FILE"; return 0; }
    die "a cluster was started in $W but does not answer: scripts/cluster.sh down first"
  fi
  cmd_build
  local t0=$SECONDS
  if [ -e "$W" ] && [ -n "$(ls -A "$W" 2>/dev/null)" ]; then
    die "$W exists and is not a stopped cluster's: remove it or set SIGNALSTACK_CLUSTER_DIR"
  fi
  mkdir -p "$W/run" "$W/logs"
  touch "$W/run/up"
  network_up
  pki
  configs
  log "etcd, kube-apiserver"
  start_bg etcd "$BIN/etcd" --name signalstack --data-dir "$W/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" --initial-advertise-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" \
    --initial-cluster "signalstack=http://127.0.0.1:$((ETCD_PORT + 1))" --listen-metrics-urls "" \
    --quota-backend-bytes 2147483648
  start_bg kube-apiserver "$BIN/kube-apiserver" --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --bind-address "$NODE_IP" --advertise-address "$NODE_IP" --secure-port 6443 \
    --service-cluster-ip-range "$SERVICE_CIDR" --client-ca-file "$W/pki/ca.crt" \
    --tls-cert-file "$W/pki/apiserver.crt" --tls-private-key-file "$W/pki/apiserver.key" \
    --service-account-key-file "$W/pki/sa.pub" --service-account-signing-key-file "$W/pki/sa.key" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --authorization-mode Node,RBAC --kubelet-client-certificate "$W/pki/admin.crt" \
    --kubelet-client-key "$W/pki/admin.key" --kubelet-preferred-address-types InternalIP \
    --profiling=false --v=1
  wait_for "kube-apiserver" 120 kubectl get --raw /readyz
  crds
  log "apiserver ready ($((SECONDS - t0)) s); controller-manager, scheduler, containerd, kubelet, kube-proxy, CoreDNS"
  start_bg kube-controller-manager "$BIN/kube-controller-manager" --kubeconfig "$KUBECONFIG_FILE" \
    --authentication-kubeconfig "$KUBECONFIG_FILE" --authorization-kubeconfig "$KUBECONFIG_FILE" \
    --bind-address 127.0.0.1 --service-account-private-key-file "$W/pki/sa.key" \
    --root-ca-file "$W/pki/ca.crt" --use-service-account-credentials \
    --service-cluster-ip-range "$SERVICE_CIDR" --cluster-name signalstack --profiling=false --v=1
  start_bg kube-scheduler "$BIN/kube-scheduler" --kubeconfig "$KUBECONFIG_FILE" \
    --authentication-kubeconfig "$KUBECONFIG_FILE" --authorization-kubeconfig "$KUBECONFIG_FILE" \
    --bind-address 127.0.0.1 --profiling=false --v=1
  start_bg containerd containerd --config "$W/containerd/config.toml"
  wait_for containerd 60 ctr version
  # restarted whenever it exits, as a service manager would: it gives up at once while
  # containerd's CRI is still loading a large image store
  start_bg kubelet bash -c 'while true; do "$@"; sleep 1; done' kubelet "$BIN/kubelet" --config "$W/kubelet/config.yaml" --kubeconfig "$KUBECONFIG_FILE" \
    --root-dir "$W/kubelet" --cert-dir "$W/pki" --node-ip "$NODE_IP" --hostname-override "$NODE_NAME" --v=1
  start_bg kube-proxy "$BIN/kube-proxy" --config "$W/kube-proxy.yaml" --v=1
  start_bg coredns "$BIN/coredns" -conf "$W/Corefile"
  cluster_images
  wait_for "node $NODE_NAME" 120 kubectl wait --for=condition=Ready "node/$NODE_NAME" --timeout=2s
  wait_for "CoreDNS" 60 curl -fsS http://127.0.0.1:18181/ready
  wait_for "the default service account" 60 kubectl get serviceaccount default -n default
  log "cluster ready in $((SECONDS - t0)) s: export KUBECONFIG=$KUBECONFIG_FILE"
  echo "$KUBECONFIG_FILE"
}

cmd_status() {
  [ -f "$KUBECONFIG_FILE" ] && [ -x "$BIN/kubectl" ] || return 1
  kubectl get --raw /readyz >/dev/null 2>&1 || return 1
  kubectl get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null | grep -qx True
}

cmd_env() { echo "export KUBECONFIG=$KUBECONFIG_FILE"; }

stop() { # stop NAME [SECONDS]: SIGTERM, then SIGKILL after SECONDS
  local name=$1 limit=${2:-20} p t0=$SECONDS
  p=$(cat "$(pidfile "$name")" 2>/dev/null) || return 0
  # its process group (start_bg's setsid): a supervising loop and what it runs
  if kill -0 -- "-$p" 2>/dev/null; then
    kill -TERM -- "-$p" 2>/dev/null || true
    while kill -0 -- "-$p" 2>/dev/null && [ $((SECONDS - t0)) -lt "$limit" ]; do sleep 0.2; done
    kill -KILL -- "-$p" 2>/dev/null || true
  fi
  rm -f "$(pidfile "$name")"
}

kube_chains() { # "IPT TABLE CHAIN" of every KUBE-* chain on the host (kube-proxy's and the kubelet's)
  local ipt table
  for ipt in iptables ip6tables; do
    command -v "$ipt-save" >/dev/null || continue
    for table in filter nat mangle raw; do
      "$ipt-save" -t "$table" 2>/dev/null | sed -n "s/^:\(KUBE-[^ ]*\) .*/$ipt $table \1/p"
    done
  done
}

drop_kube_chains() { # the KUBE-* chains `up` found absent, with the rules jumping to them
  local ipt table chain rule
  while read -r ipt table chain; do
    grep -qxF "$ipt $table $chain" "$W/run/chains-before" 2>/dev/null && continue
    while read -r rule; do
      eval "$ipt -t $table ${rule/#-A/-D}" 2>/dev/null || true
    done < <("$ipt-save" -t "$table" | grep -E -- "^-A .* -j $chain( |\$)")
    "$ipt" -t "$table" -F "$chain" 2>/dev/null || true
    echo "$ipt $table $chain"
  done < <(kube_chains) | while read -r ipt table chain; do "$ipt" -t "$table" -X "$chain" 2>/dev/null || true; done
}

cgroup_pids() { # every pid in the kubelet's pod cgroups (cgroup v1 and v2)
  find /sys/fs/cgroup -path '*kubepods*' -name cgroup.procs -exec cat {} + 2>/dev/null | sort -u
}

cmd_down() {
  [ -f "$W/run/up" ] || { log "no cluster in $W"; return 0; }
  local t0=$SECONDS
  # No replacements: the controllers and the scheduler go first. Then the pods, through the
  # kubelet (their sandboxes' networks are torn down by the CNI plugin).
  stop kube-controller-manager; stop kube-scheduler
  if cmd_status; then
    log "deleting every pod"
    kubectl delete pods --all --all-namespaces --grace-period=0 --force --wait=false >/dev/null 2>&1 || true
    local until=$((SECONDS + 30))
    while [ $SECONDS -lt $until ] && [ -n "$(ctr tasks ls -q 2>/dev/null)" ]; do sleep 1; done
  fi
  stop kubelet; stop kube-proxy; stop coredns
  stop kafka 40
  # what is left of the pods: their processes (cgroups), tasks, shims, then containerd
  local p
  for p in $(cgroup_pids); do kill -KILL "$p" 2>/dev/null || true; done
  if running containerd; then
    local c
    for c in $(ctr tasks ls -q 2>/dev/null); do ctr tasks kill -s SIGKILL "$c" >/dev/null 2>&1 || true; ctr tasks delete "$c" >/dev/null 2>&1 || true; done
  fi
  stop containerd
  pkill -KILL -f "containerd-shim-runc-v2 .*-address $CTR_SOCK" 2>/dev/null || true
  stop kube-apiserver; stop etcd
  # kube-proxy's rules and chains (up refused to start beside another kube-proxy's)
  if [ -x "$BIN/kube-proxy" ]; then
    "$BIN/kube-proxy" --cleanup --v=0 >>"$W/logs/kube-proxy-cleanup.log" 2>&1 || true
  fi
  drop_kube_chains # what --cleanup leaves (KUBE-FIREWALL, the kubelet's canaries)
  if was_made forward-chain; then
    iptables -D FORWARD -j "$FORWARD_CHAIN" 2>/dev/null || true
    iptables -F "$FORWARD_CHAIN" 2>/dev/null || true
    iptables -X "$FORWARD_CHAIN" 2>/dev/null || true
  fi
  # mounts under the work dir (volumes, overlays, sandboxes' /dev/shm) and the pods' netns
  local m
  while read -r m; do umount -l "$m" 2>/dev/null || true; done < <(findmnt -rn -o TARGET | grep -e "^$W/" -e "^$CTR_ROOT/" | sort -r)
  for m in /var/run/netns/cni-*; do
    [ -e "$m" ] || continue
    grep -qxF "$m" "$W/run/netns-before" 2>/dev/null && continue
    umount -l "$m" 2>/dev/null || true; rm -f "$m"
  done
  for m in /run/containerd/s/*; do # our shims' sockets
    [ -e "$m" ] || continue
    grep -qxF "${m##*/}" "$W/run/shims-before" 2>/dev/null || rm -f "$m"
  done
  # the kubelet's cgroups, deepest first (up refused to start beside another kubelet's)
  find /sys/fs/cgroup -depth -type d -path '*kubepods*' -exec rmdir {} \; 2>/dev/null || true
  # the pods' veths (a namespace dies asynchronously), the bridge, the address, the routes
  local l
  for l in $(ip -o link show master "$BRIDGE" 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do
    ip link del "$l" 2>/dev/null || true
  done
  was_made bridge && { ip link del "$BRIDGE" 2>/dev/null || true; }
  was_made node-ip && { ip addr del "$NODE_IP/32" dev lo 2>/dev/null || true; }
  was_made route-pods && { ip route del unreachable "$POD_CIDR" 2>/dev/null || true; }
  was_made route-services && { ip route del unreachable "$SERVICE_CIDR" 2>/dev/null || true; }
  local key val
  while read -r key val; do sysctl -qw "$key=$val" || true; done <"$W/run/sysctl-before" 2>/dev/null || true
  was_made var-log-containers && rm -rf /var/log/containers
  was_made var-lib-cni && rm -rf /var/lib/cni
  was_made var-lib-kubelet && rm -rf /var/lib/kubelet
  was_made run-netns && { rmdir /run/netns 2>/dev/null || true; }
  rm -rf "$W"
  log "cluster removed ($((SECONDS - t0)) s)"
}

# ---- what the chart's ci profile (charts/signalstack/values-ci.yaml) expects of the host ----------
KAFKA_PORT=19092
NAMESPACE="${NAMESPACE:-signalstack}"
RELEASE="${RELEASE:-signalstack}"

cmd_kafka() { # a broker on the bridge's address: the ci profile's global.kafka.bootstrapServers
  running kafka && { echo "$BRIDGE_IP:$KAFKA_PORT"; return 0; }
  [ -x "$ROOT/.venv/bin/python" ] || die "no .venv: make setup"
  mkdir -p "$W/kafka"
  start_bg kafka "$ROOT/.venv/bin/python" -m signalstack.devstack kafka --host "$BRIDGE_IP" \
    --port "$KAFKA_PORT" --workdir "$W/kafka"
  wait_for "kafka on $BRIDGE_IP:$KAFKA_PORT" 120 grep -q "kafka ready" "$W/logs/kafka.log"
  log "kafka on $BRIDGE_IP:$KAFKA_PORT"
  echo "$BRIDGE_IP:$KAFKA_PORT"
}

host_volume() { # host_volume NAME DIR CLAIM MODES: a PersistentVolume on DIR, bound to one claim
  kubectl apply -f - >/dev/null <<YAML
apiVersion: v1
kind: PersistentVolume
metadata:
  name: $1
  labels: {app.kubernetes.io/managed-by: signalstack-local-cluster}
spec:
  capacity: {storage: 100Gi}
  accessModes: $4
  persistentVolumeReclaimPolicy: Retain
  storageClassName: ""
  hostPath: {path: $2, type: Directory}
  claimRef: {namespace: $NAMESPACE, name: $3}
YAML
}

cmd_volumes() { # cmd_volumes MODELS_DIR: what the ci profile's claims bind to (no provisioner here)
  local src=${1:-}
  [ -d "${src:-/nonexistent}" ] || die "usage: scripts/cluster.sh volumes MODELS_DIR (bundles <model>/bundle.json, e.g. demo-output/models from make demo)"
  kubectl get namespace "$NAMESPACE" >/dev/null 2>&1 || kubectl apply -f "$ROOT/manifests/namespace.yaml" >/dev/null
  # the models serving reads: a copy, readable by the pods' uid; the claim is ours
  rm -rf "$W/volumes/models"; mkdir -p "$W/volumes/models"
  cp -r "$src"/. "$W/volumes/models/"
  chmod -R a+rX "$W/volumes/models"
  host_volume "$RELEASE-models" "$W/volumes/models" "$RELEASE-models" "[ReadOnlyMany, ReadWriteOnce]"
  kubectl apply -f - >/dev/null <<YAML
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: $RELEASE-models
  namespace: $NAMESPACE
  labels: {app.kubernetes.io/managed-by: signalstack-local-cluster}
spec:
  accessModes: [ReadOnlyMany]
  storageClassName: ""
  volumeName: $RELEASE-models
  resources: {requests: {storage: 1Gi}}
YAML
  # the stream job's checkpoints: the chart's claim (kept on uninstall) binds here
  if ! kubectl get pv "$RELEASE-stream-checkpoints" >/dev/null 2>&1; then
    mkdir -p "$W/volumes/checkpoints"
    chown 10001:10001 "$W/volumes/checkpoints"
    host_volume "$RELEASE-stream-checkpoints" "$W/volumes/checkpoints" "$RELEASE-stream-checkpoints" \
      "[ReadWriteMany, ReadWriteOnce]"
  fi
  log "volumes: models from $src, stream checkpoints (host dirs under $W/volumes)"
}

cmd_deploy() { # what `make deploy` does when this cluster runs: the chart with the ci profile
  cmd_status || die "no local cluster answers: make cluster-up"
  cluster_images
  local bootstrap models="${MODELS_DIR:-$ROOT/demo-output/models}"
  bootstrap=$(cmd_kafka)
  [ -d "$models" ] || die "no model bundles in $models: run make demo (or set MODELS_DIR)"
  cmd_volumes "$models"
  log "helm upgrade --install $RELEASE (values-ci.yaml) into namespace $NAMESPACE"
  PATH="$BIN:$PATH" KUBECONFIG="$KUBECONFIG_FILE" "$ROOT/.cache/bin/helm" upgrade --install "$RELEASE" \
    "$ROOT/charts/signalstack" -n "$NAMESPACE" -f "$ROOT/charts/signalstack/values-ci.yaml" \
    --wait --timeout 10m "$@"
  # what the operators would do with the release's custom resources
  log "the KafkaTopics on $bootstrap (Strimzi's Topic Operator's part)"
  KUBECONFIG="$KUBECONFIG_FILE" "$ROOT/.venv/bin/python" -m signalstack.devstack topics "$bootstrap" \
    --namespace "$NAMESPACE" >/dev/null
  if ! kubectl -n "$NAMESPACE" get pod "$RELEASE-stream-driver" >/dev/null 2>&1; then
    log "spark-submit of SparkApplication $RELEASE-stream (spark-operator's part)"
    KUBECONFIG="$KUBECONFIG_FILE" "$ROOT/.venv/bin/python" -m signalstack.devstack spark-submit \
      "$RELEASE-stream" --namespace "$NAMESPACE" >"$W/logs/spark-submit.log" 2>&1 \
      || { tail -n 20 "$W/logs/spark-submit.log" >&2; die "spark-submit failed"; }
  fi
  log "deployed: kubectl --kubeconfig $KUBECONFIG_FILE -n $NAMESPACE get pods"
}

cmd_purge() { # down, and the image cache too
  cmd_down
  rm -rf "$CTR_ROOT"
  log "image cache $CTR_ROOT removed"
}

main() {
  local cmd=${1:-}
  shift || true
  case "$cmd" in
    build | up | down | purge | status | env | kafka | volumes | deploy) "cmd_$cmd" "$@" ;;
    images) cluster_images ;;
    *) die "usage: $0 build|up|down|purge|images|status|env|kafka|volumes|deploy" ;;
  esac
}
main "$@"
