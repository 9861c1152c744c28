{{/*
Names and labels shared by every SignalStack subchart (prometheus-community style: the chart's
name, a 63-character fullname, app.kubernetes.io/* labels; selectors only name + instance).
Every template here takes the calling subchart's context (.), so .Chart is that subchart.
*/}}

{{- define "common.names.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* <release>-<chart> (the release name alone when it already holds the chart name) */}}
{{- define "common.names.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* the fullname another component of this release gets: include "common.names.component" (dict "ctx" . "name" "timescaledb") */}}
{{- define "common.names.component" -}}
{{- if contains .name .ctx.Release.Name -}}
{{- .ctx.Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .ctx.Release.Name .name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "common.names.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "common.labels.matchLabels" -}}
app.kubernetes.io/name: {{ include "common.names.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "common.labels.standard" -}}
helm.sh/chart: {{ include "common.names.chart" . }}
{{ include "common.labels.matchLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: signalstack
app.kubernetes.io/component: {{ .Chart.Name }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* pod labels: standard + one signalstack.io/<server>-client label per server the pod talks to
(the network policies admit those): include "common.labels.pod" (dict "ctx" . "uses" (list "kafka")) */}}
{{- define "common.labels.pod" -}}
{{ include "common.labels.standard" .ctx }}
{{- range .uses }}
signalstack.io/{{ . }}-client: "true"
{{- end }}
{{- with .ctx.Values.podLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* labels of a helper pod (migrations, helm tests) that must not match the component's
selectors: (dict "ctx" . "name" "timescaledb-migrations" "uses" (list "timescaledb")) */}}
{{- define "common.labels.helper" -}}
app.kubernetes.io/name: {{ .name }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: signalstack
app.kubernetes.io/component: {{ .ctx.Chart.Name }}
{{- range .uses | default list }}
signalstack.io/{{ . }}-client: "true"
{{- end }}
{{- end -}}

{{- define "common.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "common.names.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}
