{{/*
Pod security "restricted": the global defaults (global.podSecurityContext /
global.containerSecurityContext) overlaid with the subchart's podSecurityContext /
securityContext values.
*/}}
{{- define "common.podSecurityContext" -}}
{{- $g := (.Values.global).podSecurityContext | default dict -}}
{{- toYaml (mergeOverwrite (deepCopy $g) (deepCopy (.Values.podSecurityContext | default dict))) -}}
{{- end -}}

{{- define "common.containerSecurityContext" -}}
{{- $g := (.Values.global).containerSecurityContext | default dict -}}
{{- toYaml (mergeOverwrite (deepCopy $g) (deepCopy (.Values.securityContext | default dict))) -}}
{{- end -}}

{{/* the writable scratch space of a read-only root filesystem: an emptyDir at /tmp */}}
{{- define "common.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.tmpSizeLimit | default "256Mi" }}
{{- end -}}

{{- define "common.tmpVolumeMount" -}}
- name: tmp
  mountPath: /tmp
{{- end -}}

{{/* scheduling knobs every pod spec takes */}}
{{- define "common.scheduling" -}}
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
{{- with .Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- end -}}
