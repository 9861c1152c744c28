#!/usr/bin/env bash
# The cluster path's make targets (docs/components/cluster.md):
#   manifests/cluster.sh kind-up       kind cluster `signalstack` (kind-config.yaml, node image
#                                      KIND_NODE_IMAGE) + the local registry on 127.0.0.1:5001
#   manifests/cluster.sh kind-down     delete both
#   manifests/cluster.sh port-forward  Grafana :3000, serving :8080, MLflow :5000 (Ctrl-C stops)
# kind-up is idempotent: a running registry or cluster is kept, the node config re-applied.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=../scripts/versions.env
source "$ROOT/scripts/versions.env"
CLUSTER=signalstack             # kind-config.yaml `name:`; kubectl context kind-signalstack
REG_NAME=kind-registry          # reachable from the nodes as kind-registry:5000 on the `kind` network
REG_PORT=5001                   # on the host: localhost:5001 (skaffold --default-repo, values-kind.yaml)
NAMESPACE=${NAMESPACE:-signalstack}
RELEASE=${RELEASE:-signalstack}

log() { printf '\033[1m[cluster]\033[0m %s\n' "$*" >&2; }
need() { command -v "$1" >/dev/null 2>&1 || { echo "'$1' is required: $2" >&2; exit 1; }; }

kind_up() {
  need docker "install Docker"
  need kind "go install sigs.k8s.io/kind@${KIND_VERSION}"
  need kubectl "install kubectl"
  # 1. The registry container (kind's local-registry recipe), published on loopback only.
  if [ "$(docker inspect -f '{{.State.Running}}' "$REG_NAME" 2>/dev/null || true)" != true ]; then
    docker rm -f "$REG_NAME" >/dev/null 2>&1 || true
    log "registry $KIND_REGISTRY_IMAGE on 127.0.0.1:$REG_PORT"
    docker run -d --restart=always -p "127.0.0.1:${REG_PORT}:5000" --network bridge \
      --name "$REG_NAME" "$KIND_REGISTRY_IMAGE" >/dev/null
  fi
  # 2. The cluster, with containerd reading /etc/containerd/certs.d (kind-config.yaml's patch).
  if ! kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
    log "kind create cluster $CLUSTER ($KIND_NODE_IMAGE)"
    kind create cluster --name "$CLUSTER" --config "$ROOT/kind-config.yaml" --image "$KIND_NODE_IMAGE" --wait 180s
  fi
  # 3. On every node, localhost:5001 means the registry container.
  local dir="/etc/containerd/certs.d/localhost:${REG_PORT}" node
  for node in $(kind get nodes --name "$CLUSTER"); do
    docker exec "$node" mkdir -p "$dir"
    printf '[host."http://%s:5000"]\n' "$REG_NAME" | docker exec -i "$node" cp /dev/stdin "$dir/hosts.toml"
  done
  # 4. The registry joins the cluster's network.
  if [ "$(docker inspect -f '{{json .NetworkSettings.Networks.kind}}' "$REG_NAME")" = null ]; then
    docker network connect kind "$REG_NAME"
  fi
  # 5. Tell tools where the registry is.
  kubectl --context "kind-$CLUSTER" apply -f "$ROOT/manifests/local-registry-hosting.yaml"
  log "ready: context kind-$CLUSTER, registry localhost:$REG_PORT; next: make operators deploy"
}

kind_down() {
  need kind "go install sigs.k8s.io/kind@${KIND_VERSION}"
  kind delete cluster --name "$CLUSTER"
  docker rm -f "$REG_NAME" >/dev/null 2>&1 || true
}

port_forward() {
  need kubectl "install kubectl"
  local pids=()
  kubectl -n monitoring port-forward svc/kps-grafana 3000:80 & pids+=($!)
  kubectl -n "$NAMESPACE" port-forward "svc/${RELEASE}-serving" 8080:8080 & pids+=($!)
  kubectl -n "$NAMESPACE" port-forward "svc/${RELEASE}-mlflow" 5000:5000 & pids+=($!)
  trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT INT TERM
  log "Grafana http://localhost:3000  serving http://localhost:8080  MLflow http://localhost:5000 (Ctrl-C stops)"
  wait
}

case "${1:-}" in
  kind-up) kind_up ;;
  kind-down) kind_down ;;
  port-forward) port_forward ;;
  *) echo "usage: $0 kind-up|kind-down|port-forward" >&2; exit 2 ;;
esac
