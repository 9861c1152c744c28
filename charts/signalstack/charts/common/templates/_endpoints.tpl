{{/*
Where this release's servers are, from global values (one place): each can be pointed at an
external server, else it is the in-release one.
*/}}
{{- define "common.kafka.clusterName" -}}
{{- .Values.global.kafka.clusterName | default .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}

{{- define "common.kafka.bootstrapServers" -}}
{{- .Values.global.kafka.bootstrapServers | default (printf "%s-kafka-bootstrap:%v" (include "common.kafka.clusterName" .) .Values.global.contracts.ports.kafka) -}}
{{- end -}}

{{- define "common.timescaledb.host" -}}
{{- .Values.global.timescaledb.host | default (include "common.names.component" (dict "ctx" . "name" "timescaledb")) -}}
{{- end -}}

{{/* the Secret holding the database password: existingSecret, else the one timescaledb generates */}}
{{- define "common.timescaledb.secretName" -}}
{{- .Values.global.timescaledb.existingSecret | default (include "common.names.component" (dict "ctx" . "name" "timescaledb")) -}}
{{- end -}}

{{- define "common.mlflow.trackingUri" -}}
{{- .Values.global.mlflow.trackingUri | default (printf "http://%s:%v" (include "common.names.component" (dict "ctx" . "name" "mlflow")) .Values.global.contracts.ports.mlflow) -}}
{{- end -}}

{{/*
Environment of a SignalStack process (names from services/signalstack/config.py):
include "common.env" (dict "ctx" . "uses" (list "kafka" "timescaledb" "mlflow"))
*/}}
{{- define "common.env" -}}
{{- $ctx := .ctx -}}
{{- $g := $ctx.Values.global -}}
- name: LOG_FORMAT
  value: json
- name: LOG_LEVEL
  value: {{ $ctx.Values.logLevel | default $g.logLevel | default "INFO" | quote }}
- name: TMPDIR
  value: /tmp
- name: HOME
  value: /tmp
- name: MARKET_SYMBOLS
  value: {{ $g.market.symbols | quote }}
{{- if has "kafka" .uses }}
- name: KAFKA_BOOTSTRAP_SERVERS
  value: {{ include "common.kafka.bootstrapServers" $ctx | quote }}
- name: KAFKA_TRADES_TOPIC
  value: {{ $g.contracts.topics.trades.name | quote }}
- name: KAFKA_FEATURES_TOPIC
  value: {{ $g.contracts.topics.features.name | quote }}
- name: KAFKA_PREDICTIONS_TOPIC
  value: {{ $g.contracts.topics.predictions.name | quote }}
- name: KAFKA_DLQ_TOPIC
  value: {{ $g.contracts.topics.dlq.name | quote }}
- name: KAFKA_PARTITIONS
  value: {{ $g.contracts.topics.trades.partitions | quote }}
- name: KAFKA_REPLICATION_FACTOR
  value: {{ $g.contracts.topics.trades.replicas | quote }}
{{- end }}
{{- if has "timescaledb" .uses }}
- name: STORE_TYPE
  value: timescale
- name: TIMESCALE_HOST
  value: {{ include "common.timescaledb.host" $ctx | quote }}
- name: TIMESCALE_PORT
  value: {{ $g.contracts.ports.timescaledb | quote }}
- name: TIMESCALE_USER
  value: {{ $g.timescaledb.user | quote }}
- name: TIMESCALE_DATABASE
  value: {{ $g.timescaledb.database | quote }}
- name: TIMESCALE_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "common.timescaledb.secretName" $ctx }}
      key: {{ $g.timescaledb.passwordKey }}
{{- end }}
{{- if has "mlflow" .uses }}
- name: MLFLOW_TRACKING_URI
  value: {{ include "common.mlflow.trackingUri" $ctx | quote }}
- name: MLFLOW_MODEL_ALIAS
  value: {{ $g.mlflow.modelAlias | quote }}
{{- end }}
{{- range $name, $value := $ctx.Values.env }}
- name: {{ $name }}
  value: {{ $value | quote }}
{{- end }}
{{- with $ctx.Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}
