{{/* the servers training talks to */}}
{{- define "training.uses" -}}
{{- list "timescaledb" "mlflow" | toJson -}}
{{- end -}}


{{/* the Job spec of the scheduled training and of the retraining drift creates */}}
{{- define "training.jobSpec" -}}
{{- $uses := include "training.uses" . | fromJsonArray -}}
backoffLimit: {{ .Values.backoffLimit }}
activeDeadlineSeconds: {{ .Values.activeDeadlineSeconds }}
ttlSecondsAfterFinished: {{ .Values.ttlSecondsAfterFinished }}
template:
  metadata:
    labels:
      {{- include "common.labels.pod" (dict "ctx" . "uses" $uses) | nindent 6 }}
    {{- with .Values.podAnnotations }}
    annotations:
      {{- toYaml . | nindent 6 }}
    {{- end }}
  spec:
    restartPolicy: Never
    serviceAccountName: {{ include "common.serviceAccountName" . }}
    automountServiceAccountToken: false
    {{- include "common.imagePullSecrets" . | nindent 4 }}
    securityContext:
      {{- include "common.podSecurityContext" . | nindent 6 }}
    {{- include "common.scheduling" . | nindent 4 }}
    containers:
      - name: train
        image: {{ include "common.image" (dict "image" .Values.image "ctx" .) }}
        imagePullPolicy: {{ include "common.imagePullPolicy" (dict "image" .Values.image "ctx" .) }}
        command:
          {{- include "common.successCommand" .Values.successExitCodes | nindent 10 }}
        args:
          {{- toYaml .Values.args | nindent 10 }}
        env:
          - name: TRAIN_THREADS
            value: {{ .Values.threads | quote }}
          {{- include "common.env" (dict "ctx" . "uses" $uses) | nindent 10 }}
        resources:
          {{- toYaml .Values.resources | nindent 10 }}
        securityContext:
          {{- include "common.containerSecurityContext" . | nindent 10 }}
        volumeMounts:
          {{- include "common.tmpVolumeMount" . | nindent 10 }}
    volumes:
      {{- include "common.tmpVolume" . | nindent 6 }}
{{- end -}}
