#!/bin/bash
# Entry point of the stream image (Dockerfile, target `stream`). It keeps the contract of the
# official Apache Spark images, which the spark-operator and `spark-submit --master k8s://...`
# rely on when they start the driver and executor pods:
#
#   driver ARGS...   spark-submit in client mode inside the driver pod; ARGS are what the
#                    submitter passed (--properties-file, --class, the application, its args)
#   executor         a KubernetesExecutorBackend configured by the SPARK_* variables the
#                    driver sets on executor pods (SPARK_DRIVER_URL, SPARK_EXECUTOR_ID, ...)
#   anything else    run as given, e.g. `signalstack stream --engine spark` or `bash`
#
# tini reaps Spark's child processes (the Python workers) and forwards signals. The Kafka
# connector jars sit in $SPARK_HOME/jars, so both roles have them on the default classpath.
set -euo pipefail

: "${SPARK_HOME:?SPARK_HOME is not set}"

# The JVM's classpath, as the official images compose it: configuration directories first
# (when set), then Spark's jars and any extra or distribution classpath.
classpath() {
  local cp="${SPARK_CLASSPATH:+$SPARK_CLASSPATH:}$SPARK_HOME/jars/*"
  cp="${SPARK_CONF_DIR:-$SPARK_HOME/conf}:$cp"
  [ -n "${HADOOP_CONF_DIR:-}" ] && cp="$HADOOP_CONF_DIR:$cp"
  [ -n "${SPARK_EXTRA_CLASSPATH:-}" ] && cp="$cp:$SPARK_EXTRA_CLASSPATH"
  [ -n "${SPARK_DIST_CLASSPATH:-}" ] && cp="$cp:$SPARK_DIST_CLASSPATH"
  printf '%s' "$cp"
}

java_bin() { if [ -n "${JAVA_HOME:-}" ]; then echo "$JAVA_HOME/bin/java"; else command -v java; fi; }

role=${1:-}
case "$role" in
  driver)
    shift
    submit=("$SPARK_HOME/bin/spark-submit")
    # The driver pod's IP, set by the submission through the downward API.
    if [ -n "${SPARK_DRIVER_BIND_ADDRESS:-}" ]; then
      submit+=(--conf "spark.driver.bindAddress=$SPARK_DRIVER_BIND_ADDRESS"
               --conf "spark.executorEnv.SPARK_DRIVER_POD_IP=$SPARK_DRIVER_BIND_ADDRESS")
    fi
    # spark-submit composes the driver's classpath itself ($SPARK_HOME/jars, the conf dirs).
    exec tini -s -- "${submit[@]}" --deploy-mode client "$@"
    ;;
  executor)
    shift
    for v in SPARK_DRIVER_URL SPARK_EXECUTOR_ID SPARK_EXECUTOR_CORES SPARK_APPLICATION_ID \
             SPARK_EXECUTOR_POD_IP SPARK_EXECUTOR_MEMORY; do
      [ -n "${!v:-}" ] || { echo "executor: $v is not set (the Spark driver sets it)" >&2; exit 64; }
    done
    # SPARK_JAVA_OPT_0, SPARK_JAVA_OPT_1, ...: the executor's JVM options, in their index order.
    opts=()
    while IFS= read -r name; do
      opts+=("${!name}")
    done < <(compgen -e | grep '^SPARK_JAVA_OPT_[0-9]*$' | sort -t_ -k4 -n)
    exec tini -s -- "$(java_bin)" "${opts[@]}" \
      -Xms"$SPARK_EXECUTOR_MEMORY" -Xmx"$SPARK_EXECUTOR_MEMORY" -cp "$(classpath)" \
      org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend \
      --driver-url "$SPARK_DRIVER_URL" --executor-id "$SPARK_EXECUTOR_ID" \
      --cores "$SPARK_EXECUTOR_CORES" --app-id "$SPARK_APPLICATION_ID" \
      --hostname "$SPARK_EXECUTOR_POD_IP" \
      --resourceProfileId "${SPARK_RESOURCE_PROFILE_ID:-0}" \
      ${SPARK_EXECUTOR_POD_NAME:+--podName "$SPARK_EXECUTOR_POD_NAME"} \
      "$@"
    ;;
  "")
    echo "usage: driver ARGS... | executor | COMMAND [ARGS...]" >&2
    exit 64
    ;;
  *)
    exec tini -s -- "$@"
    ;;
esac
