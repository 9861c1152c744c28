{{/*
The image reference, only from values: [<registry>/]<repository>:<tag>. The registry is the
image's own, else global.image.registry (none when the repository names one, as skaffold's do); the tag the image's own, else global.image.tag, else
the chart's appVersion. A "latest" tag (or none at all) is refused.
include "common.image" (dict "image" .Values.image "ctx" .)
*/}}
{{- define "common.image" -}}
{{- $g := (.ctx.Values.global).image | default dict -}}
{{- $registry := .image.registry | default $g.registry | default "" -}}
{{- /* a repository that already names its registry (host with "." or ":", or localhost) keeps it */ -}}
{{- $first := first (splitList "/" .image.repository) -}}
{{- if and (gt (len (splitList "/" .image.repository)) 1) (or (contains "." $first) (contains ":" $first) (eq $first "localhost")) -}}
{{- $registry = "" -}}
{{- end -}}
{{- $tag := .image.tag | default $g.tag | default .ctx.Chart.AppVersion | toString -}}
{{- if or (eq $tag "latest") (eq $tag "") -}}
{{- fail (printf "%s: image %s needs a pinned tag (not %q): set global.image.tag or the image's tag" .ctx.Chart.Name .image.repository $tag) -}}
{{- end -}}
{{- if .image.digest -}}
{{- printf "%s%s@%s" (ternary "" (printf "%s/" $registry) (eq $registry "")) .image.repository .image.digest -}}
{{- else -}}
{{- printf "%s%s:%s" (ternary "" (printf "%s/" $registry) (eq $registry "")) .image.repository $tag -}}
{{- end -}}
{{- end -}}

{{- define "common.imagePullPolicy" -}}
{{- .image.pullPolicy | default ((.ctx.Values.global).image).pullPolicy | default "IfNotPresent" -}}
{{- end -}}

{{- define "common.imagePullSecrets" -}}
{{- $secrets := concat ((.Values.global).imagePullSecrets | default list) (.Values.imagePullSecrets | default list) -}}
{{- if $secrets }}
imagePullSecrets:
{{- range $secrets }}
  - name: {{ if kindIs "map" . }}{{ .name }}{{ else }}{{ . }}{{ end }}
{{- end }}
{{- end }}
{{- end -}}
