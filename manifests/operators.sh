#!/usr/bin/env bash
# make operators: the cluster prerequisites of the signalstack chart, into the current kubectl
# context (kind or a real cluster): the signalstack namespace (restricted pod security) and the
# operators at the versions pinned in scripts/versions.env, each with its values file in
# manifests/values/. Idempotent (`helm upgrade --install`, `kubectl apply`).
#
#   manifests/operators.sh                 Strimzi, spark-operator, kube-prometheus-stack,
#                                          prometheus-pushgateway (drift's and backfill's metrics)
#   KSERVE=1 manifests/operators.sh        + KServe (RawDeployment; needs cert-manager already)
#   METRICS_SERVER=1 manifests/operators.sh  + metrics-server (kind: --kubelet-insecure-tls)
#
# HELM defaults to .cache/bin/helm (`make setup`), then helm on PATH.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=../scripts/versions.env
source "$ROOT/scripts/versions.env"
VALUES="$ROOT/manifests/values"
HELM=${HELM:-$ROOT/.cache/bin/helm}
[ -x "$HELM" ] || HELM=$(command -v helm) || { echo "helm not found: run make setup" >&2; exit 1; }
command -v kubectl >/dev/null || { echo "kubectl not found" >&2; exit 1; }
TIMEOUT=${OPERATORS_TIMEOUT:-10m}

log() { printf '\033[1m[operators]\033[0m %s\n' "$*" >&2; }

install() { # install RELEASE NAMESPACE CHART VERSION VALUES [helm args...]
  local release=$1 ns=$2 chart=$3 version=$4 values=$5; shift 5
  log "$release: $chart $version -> namespace $ns"
  "$HELM" upgrade --install "$release" "$chart" --version "$version" --namespace "$ns" \
    --create-namespace --values "$values" --wait --timeout "$TIMEOUT" "$@"
}

log "namespace signalstack (pod security: restricted)"
kubectl apply -f "$ROOT/manifests/namespace.yaml"

install strimzi strimzi oci://quay.io/strimzi-helm/strimzi-kafka-operator \
  "$STRIMZI_VERSION" "$VALUES/strimzi.yaml"
install spark-operator spark-operator spark-operator "$SPARK_OPERATOR_VERSION" \
  "$VALUES/spark-operator.yaml" --repo https://kubeflow.github.io/spark-operator
install kps monitoring kube-prometheus-stack "$KUBE_PROMETHEUS_STACK_VERSION" \
  "$VALUES/kube-prometheus-stack.yaml" --repo https://prometheus-community.github.io/helm-charts
install pushgateway monitoring prometheus-pushgateway "$PUSHGATEWAY_CHART_VERSION" \
  "$VALUES/prometheus-pushgateway.yaml" --repo https://prometheus-community.github.io/helm-charts

if [ "${METRICS_SERVER:-0}" = 1 ]; then
  install metrics-server kube-system metrics-server "$METRICS_SERVER_CHART_VERSION" \
    "$VALUES/metrics-server.yaml" --repo https://kubernetes-sigs.github.io/metrics-server/
fi

if [ "${KSERVE:-0}" = 1 ]; then
  kubectl get crd certificates.cert-manager.io >/dev/null 2>&1 \
    || { echo "KServe needs cert-manager (its webhooks' certificates): install it first" >&2; exit 1; }
  "$HELM" upgrade --install kserve-crd oci://ghcr.io/kserve/charts/kserve-crd --version "$KSERVE_VERSION" \
    --namespace kserve --create-namespace --wait --timeout "$TIMEOUT"
  install kserve kserve oci://ghcr.io/kserve/charts/kserve "$KSERVE_VERSION" "$VALUES/kserve.yaml"
fi
log "done: Strimzi ${STRIMZI_VERSION}, spark-operator ${SPARK_OPERATOR_VERSION}, kube-prometheus-stack ${KUBE_PROMETHEUS_STACK_VERSION}, prometheus-pushgateway ${PUSHGATEWAY_CHART_VERSION}"
