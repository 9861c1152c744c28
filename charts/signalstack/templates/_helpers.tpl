{{- define "signalstack.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "signalstack.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "signalstack.labels" -}}
helm.sh/chart: {{ include "signalstack.chart" . }}
app.kubernetes.io/name: {{ include "signalstack.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: signalstack
{{- end -}}

{{/* the fullname of a component of this release (the subcharts' common.names.fullname) */}}
{{- define "signalstack.component" -}}
{{- include "common.names.component" (dict "ctx" .ctx "name" .name) -}}
{{- end -}}
