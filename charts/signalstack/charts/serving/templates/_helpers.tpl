{{/* the servers the inference API talks to: models from MLflow, by-symbol rows from the store,
the live feature feed from Kafka */}}
{{- define "serving.uses" -}}
{{- $uses := list "mlflow" "timescaledb" -}}
{{- if eq .Values.feed.type "kafka" }}{{ $uses = append $uses "kafka" }}{{ end -}}
{{- $uses | toJson -}}
{{- end -}}
