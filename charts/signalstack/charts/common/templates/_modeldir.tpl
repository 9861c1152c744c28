{{/*
Model bundles from a volume instead of the MLflow registry, from the subchart's values
  modelDir: {enabled, path, existingClaim}
(a PersistentVolumeClaim holding <model>/bundle.json directories, mounted read-only at path; no
claim: a writable emptyDir). Each renders nothing unless modelDir.enabled, so a caller writes
  {{- with include "common.modelDir.env" (dict "ctx" . "name" "SERVING_MODEL_DIR") }}{{ nindent 2 . }}{{ end }}
with its own indentation (the env var naming the path), and likewise "common.modelDir.volumeMount"
(in volumeMounts) and "common.modelDir.volume" (in volumes), which take the subchart's context.
*/}}
{{- define "common.modelDir.env" -}}
{{- if .ctx.Values.modelDir.enabled -}}
- name: {{ .name }}
  value: {{ .ctx.Values.modelDir.path | quote }}
{{- end -}}
{{- end -}}

{{- define "common.modelDir.volumeMount" -}}
{{- if .Values.modelDir.enabled -}}
- name: models
  mountPath: {{ .Values.modelDir.path }}
  readOnly: {{ not (empty .Values.modelDir.existingClaim) }}
{{- end -}}
{{- end -}}

{{- define "common.modelDir.volume" -}}
{{- if .Values.modelDir.enabled -}}
- name: models
  {{- if .Values.modelDir.existingClaim }}
  persistentVolumeClaim:
    claimName: {{ .Values.modelDir.existingClaim }}
    readOnly: true
  {{- else }}
  emptyDir: {}
  {{- end }}
{{- end -}}
{{- end -}}
