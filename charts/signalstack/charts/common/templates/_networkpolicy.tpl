{{/*
The NetworkPolicy of one component: the umbrella's default deny (templates/networkpolicy.yaml)
shuts every pod off; this opens only the component's own flows.
  include "common.networkPolicy" (dict "ctx" . "uses" (list "kafka" "timescaledb" "kubeApi" "internet")
                                       "ingress" (list <NetworkPolicyIngressRule>...))
uses: kafka | timescaledb | mlflow (egress to that server's pods on its contract port, and the
pod carries the signalstack.io/<server>-client label the server admits; a server outside the
release (global.kafka.bootstrapServers, global.timescaledb.host, global.mlflow.trackingUri) needs
its flow in extraEgress), kubeApi (the API server),
internet (HTTPS to public addresses: Polygon), pushgateway (the Pushgateway's pods, from
global.pushgateway, when its url is set). DNS is always open. networkPolicy.extraIngress /
extraEgress add rules (e.g. for servers outside the release).
*/}}
{{- define "common.networkPolicy" -}}
{{- $ctx := .ctx -}}
{{- $g := $ctx.Values.global -}}
{{- if and $g.networkPolicy.enabled $ctx.Values.networkPolicy.enabled }}
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ .name | default (include "common.names.fullname" $ctx) }}
  namespace: {{ $ctx.Release.Namespace }}
  labels:
    {{- include "common.labels.standard" $ctx | nindent 4 }}
spec:
  podSelector:
    matchLabels:
      {{- if .podSelector }}
      {{- toYaml .podSelector | nindent 6 }}
      {{- else }}
      {{- include "common.labels.matchLabels" $ctx | nindent 6 }}
      {{- end }}
  policyTypes: [Ingress, Egress]
  ingress:
    {{- range .ingress | default list }}
    - {{ toYaml . | nindent 6 | trim }}
    {{- end }}
    {{- with $ctx.Values.networkPolicy.extraIngress }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  egress:
    - to:
        - namespaceSelector: {}
          podSelector:
            matchLabels:
              {{- toYaml $g.networkPolicy.dnsPodLabels | nindent 14 }}
      ports:
        - {protocol: UDP, port: 53}
        - {protocol: TCP, port: 53}
    {{- if and (has "kafka" .uses) (not $g.kafka.bootstrapServers) }}
    - to:
        - podSelector:
            matchLabels:
              strimzi.io/cluster: {{ include "common.kafka.clusterName" $ctx }}
              strimzi.io/kind: Kafka
      ports:
        - {protocol: TCP, port: {{ $g.contracts.ports.kafka }}}
    {{- end }}
    {{- if and (has "timescaledb" .uses) (not $g.timescaledb.host) }}
    - to:
        - podSelector:
            matchLabels:
              app.kubernetes.io/name: timescaledb
              app.kubernetes.io/instance: {{ $ctx.Release.Name }}
      ports:
        - {protocol: TCP, port: {{ $g.contracts.ports.timescaledb }}}
    {{- end }}
    {{- if and (has "mlflow" .uses) (not $g.mlflow.trackingUri) }}
    - to:
        - podSelector:
            matchLabels:
              app.kubernetes.io/name: mlflow
              app.kubernetes.io/instance: {{ $ctx.Release.Name }}
      ports:
        - {protocol: TCP, port: {{ $g.contracts.ports.mlflow }}}
    {{- end }}
    {{- if has "kubeApi" .uses }}
    - to:
        {{- range $g.networkPolicy.kubeApiCidrs }}
        - ipBlock: {cidr: {{ . }}}
        {{- end }}
      ports:
        {{- range $g.networkPolicy.kubeApiPorts }}
        - {protocol: TCP, port: {{ . }}}
        {{- end }}
    {{- end }}
    {{- if and (has "pushgateway" .uses) $g.pushgateway.url }}
    - to:
        - podSelector:
            matchLabels:
              {{- toYaml $g.pushgateway.podLabels | nindent 14 }}
          {{- with $g.pushgateway.namespace }}
          namespaceSelector:
            matchLabels:
              kubernetes.io/metadata.name: {{ . }}
          {{- end }}
      ports:
        - {protocol: TCP, port: {{ $g.pushgateway.port }}}
    {{- end }}
    {{- if has "internet" .uses }}
    - to:
        - ipBlock:
            cidr: 0.0.0.0/0
            except: [10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, 169.254.0.0/16]
      ports:
        - {protocol: TCP, port: 443}
    {{- end }}
    {{- range .egress | default list }}
    - {{ toYaml . | nindent 6 | trim }}
    {{- end }}
    {{- with $ctx.Values.networkPolicy.extraEgress }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end }}
{{- end -}}

{{/* ingress from the pods labelled signalstack.io/<server>-client on port: (dict "server" "timescaledb" "port" 5432) */}}
{{- define "common.networkPolicy.fromClients" -}}
from:
  - podSelector:
      matchLabels:
        signalstack.io/{{ .server }}-client: "true"
ports:
  - {protocol: TCP, port: {{ .port }}}
{{- end -}}

{{/* ingress of Prometheus scrapes on a metrics port: (dict "ctx" . "port" 9108) */}}
{{- define "common.networkPolicy.fromPrometheus" -}}
from:
  - namespaceSelector:
      matchLabels:
        kubernetes.io/metadata.name: {{ .ctx.Values.global.networkPolicy.prometheusNamespace }}
    podSelector:
      matchLabels:
        {{- toYaml .ctx.Values.global.networkPolicy.prometheusPodLabels | nindent 8 }}
ports:
  - {protocol: TCP, port: {{ .port }}}
{{- end -}}

{{/* a ServiceMonitor for the component's Service port (serviceMonitor.* values); with
"bearerSecret" (dict "name" <Secret> "key" <key>) Prometheus sends that Secret's value as a bearer
token (the Secret must be in the ServiceMonitor's namespace: the release's) */}}
{{- define "common.serviceMonitor" -}}
{{- $ctx := .ctx -}}
{{- if $ctx.Values.serviceMonitor.enabled }}
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata:
  name: {{ include "common.names.fullname" $ctx }}
  namespace: {{ $ctx.Release.Namespace }}
  labels:
    {{- include "common.labels.standard" $ctx | nindent 4 }}
    {{- with $ctx.Values.global.serviceMonitor.labels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  selector:
    matchLabels:
      {{- include "common.labels.matchLabels" $ctx | nindent 6 }}
  namespaceSelector:
    matchNames: [{{ $ctx.Release.Namespace }}]
  endpoints:
    - port: {{ .port }}
      path: /metrics
      interval: {{ $ctx.Values.serviceMonitor.interval }}
      scrapeTimeout: {{ $ctx.Values.serviceMonitor.scrapeTimeout }}
      {{- with .bearerSecret }}
      authorization:
        type: Bearer
        credentials:
          name: {{ .name }}
          key: {{ .key }}
      {{- end }}
{{- end }}
{{- end -}}
