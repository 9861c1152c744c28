{{/* the servers the inference API talks to: models from MLflow, by-symbol rows from the store */}}
{{- define "serving.uses" -}}
{{- list "mlflow" "timescaledb" | toJson -}}
{{- end -}}
