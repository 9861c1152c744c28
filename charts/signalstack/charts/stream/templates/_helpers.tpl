{{/* what the driver and the executors share: labels, security contexts, env, mounts, scheduling */}}
{{- define "stream.podParts" -}}
{{- $cp := .Values.checkpoints -}}
labels:
  {{- include "common.labels.pod" (dict "ctx" . "uses" (list "kafka" "timescaledb")) | nindent 2 }}
podSecurityContext:
  {{- include "common.podSecurityContext" . | nindent 2 }}
securityContext:
  {{- include "common.containerSecurityContext" . | nindent 2 }}
env:
  - name: STREAM_CHECKPOINT_DIR
    value: {{ $cp.uri | default $cp.mountPath | quote }}
  - name: STREAM_SHUFFLE_PARTITIONS
    value: {{ .Values.shufflePartitions | quote }}
  - name: STREAM_TRIGGER_SECONDS
    value: {{ .Values.triggerSeconds | quote }}
  - name: STREAM_LATENESS_MS
    value: {{ .Values.latenessMs | quote }}
  - name: STREAM_SPARK_MASTER
    value: {{ .Values.sparkMaster | quote }}
  - name: STREAM_HTTP_HOST
    value: 0.0.0.0
  - name: STREAM_HTTP_PORT
    value: {{ .Values.global.contracts.ports.stream | quote }}
  {{- include "common.env" (dict "ctx" . "uses" (list "kafka" "timescaledb")) | nindent 2 }}
volumeMounts:
  {{- include "common.tmpVolumeMount" . | nindent 2 }}
  - name: work-dir
    mountPath: /opt/spark/work-dir
  {{- if not $cp.uri }}
  - name: checkpoints
    mountPath: {{ $cp.mountPath }}
  {{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
