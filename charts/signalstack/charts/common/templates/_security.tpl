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

{{/*
The command of a batch container whose process ends with an outcome code that is no failure
(`train` 6: every champion stayed; `drift` 7: a model drifted): `signalstack "$@"` with the
given exit codes mapped to 0 so the Job neither fails nor retries; arguments appended to the
container's args (the drift job's --model/--start/--end) reach signalstack unchanged.
include "common.successCommand" (list 0 6)
*/}}
{{- define "common.successCommand" -}}
- sh
- -c
- 'signalstack "$@"; rc=$?; case " {{ join " " . }} " in *" $rc "*) exit 0;; esac; exit $rc'
- signalstack
{{- end -}}
