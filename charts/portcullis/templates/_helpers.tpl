{{/* Names are <release>-<component>, cut to 63 characters. */}}
{{- define "portcullis.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "portcullis.name" -}}
{{- printf "%s-%s" (include "portcullis.fullname" .root) .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "portcullis.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
{{ include "portcullis.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
{{- end -}}

{{- define "portcullis.selectorLabels" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "portcullis.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* In-cluster DNS name of a component's Service. */}}
{{- define "portcullis.host" -}}
{{ include "portcullis.name" . }}.{{ .root.Release.Namespace }}.svc
{{- end -}}

{{- define "portcullis.redisUrl" -}}
{{- if .Values.redis.externalUrl -}}
{{ .Values.redis.externalUrl }}
{{- else if .Values.redis.enabled -}}
redis://{{ include "portcullis.host" (dict "root" . "component" "redis") }}:6379
{{- end -}}
{{- end -}}

{{- define "portcullis.pod" -}}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets: {{ toYaml . | nindent 2 }}
{{- end }}
securityContext: {{ toYaml .root.Values.podSecurityContext | nindent 2 }}
{{- end -}}

{{/* A PromQL label-matcher block for the alert rules: the matchers given as .m plus
     metrics.prometheusRule.selector, e.g. `{envoy_response_code_class="5", namespace="gw"}`;
     empty when both are empty. */}}
{{- define "portcullis.promSel" -}}
{{- $parts := list -}}
{{- with .m }}{{ $parts = append $parts . }}{{ end -}}
{{- with .root.Values.metrics.prometheusRule.selector }}{{ $parts = append $parts . }}{{ end -}}
{{- if $parts }}{{ printf "{%s}" (join ", " $parts) }}{{ end -}}
{{- end -}}
