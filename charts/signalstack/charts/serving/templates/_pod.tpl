{{/* the serving container (the Deployment's and the InferenceService's) */}}
{{- define "serving.container" -}}
name: serving
image: {{ include "common.image" (dict "image" .Values.image "ctx" .) }}
imagePullPolicy: {{ include "common.imagePullPolicy" (dict "image" .Values.image "ctx" .) }}
args: [serve]
ports:
  - name: http
    containerPort: {{ .Values.global.contracts.ports.serving }}
    protocol: TCP
env:
  - name: SERVING_HOST
    value: 0.0.0.0
  - name: SERVING_PORT
    value: {{ .Values.global.contracts.ports.serving | quote }}
  - name: SERVING_MODELS
    value: {{ join "," .Values.models | quote }}
  - name: SERVING_RELOAD_INTERVAL_S
    value: {{ .Values.reloadIntervalSeconds | quote }}
  - name: SERVING_FEED
    value: {{ .Values.feed.type | quote }}
  {{- if eq .Values.feed.type "kafka" }}
  - name: SERVING_FEED_GROUP_ID
    value: {{ .Values.feed.groupId | quote }}
  {{- end }}
  {{- with include "common.modelDir.env" (dict "ctx" . "name" "SERVING_MODEL_DIR") }}{{ nindent 2 . }}{{ end }}
  {{- if .Values.auth.existingSecret }}
  - name: SERVING_API_TOKEN
    valueFrom:
      secretKeyRef:
        name: {{ .Values.auth.existingSecret }}
        key: {{ .Values.auth.existingSecretKey }}
  {{- end }}
  {{- include "common.env" (dict "ctx" . "uses" (include "serving.uses" . | fromJsonArray)) | nindent 2 }}
{{- with .Values.startupProbe }}
startupProbe:
  {{- toYaml . | nindent 2 }}
{{- end }}
livenessProbe:
  {{- toYaml .Values.livenessProbe | nindent 2 }}
readinessProbe:
  {{- toYaml .Values.readinessProbe | nindent 2 }}
resources:
  {{- toYaml .Values.resources | nindent 2 }}
securityContext:
  {{- include "common.containerSecurityContext" . | nindent 2 }}
volumeMounts:
  {{- include "common.tmpVolumeMount" . | nindent 2 }}
  {{- with include "common.modelDir.volumeMount" . }}{{ nindent 2 . }}{{ end }}
{{- end -}}

{{- define "serving.volumes" -}}
{{ include "common.tmpVolume" . }}
{{- with include "common.modelDir.volume" . }}{{ nindent 0 . }}{{ end }}
{{- end -}}
