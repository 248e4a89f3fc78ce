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

{{/* Pod settings every component takes from its values .v: priority class, node
     selection and topology spread. A constraint without labelSelector gets the
     component's pod labels (what a spread of "these pods" means). */}}
{{- define "portcullis.podScheduling" -}}
{{- with .v.priorityClassName }}
priorityClassName: {{ . | quote }}
{{- end }}
{{- with .v.nodeSelector }}
nodeSelector: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .v.tolerations }}
tolerations: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .v.affinity }}
affinity: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .v.topologySpreadConstraints }}
{{- $labels := fromYaml (include "portcullis.selectorLabels" $) }}
topologySpreadConstraints:
{{- range . }}
{{- $t := deepCopy . }}
{{- if not (hasKey $t "labelSelector") }}{{ $_ := set $t "labelSelector" (dict "matchLabels" $labels) }}{{ end }}
  - {{- toYaml $t | nindent 4 }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Pod annotations: .checksums (roll the pods on a config change; they win) plus the
     component's podAnnotations. */}}
{{- define "portcullis.podAnnotations" -}}
{{- $a := merge (dict) (.checksums | default dict) (.v.podAnnotations | default dict) }}
{{- with $a }}
annotations: {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Env entries every Portcullis container gets after its own: the OTLP collector of
     its spans, then the component's extraEnv. */}}
{{- define "portcullis.commonEnv" -}}
{{- with .root.Values.tracing.otlpEndpoint }}
- {name: OTEL_EXPORTER_OTLP_ENDPOINT, value: {{ . | quote }}}
{{- end }}
{{- with .v.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* A PodDisruptionBudget for a component whose pods are replicated (.replicas: the
     least number it runs). One pod cannot be kept through a node drain, and a budget
     that forbids evicting it would block the drain instead. */}}
{{- define "portcullis.pdb" -}}
{{- if and .v.pdb.enabled (gt (int .replicas) 1) }}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "portcullis.name" . }}
  namespace: {{ .root.Release.Namespace }}
  labels: {{- include "portcullis.labels" . | nindent 4 }}
spec:
  maxUnavailable: {{ .v.pdb.maxUnavailable }}
  selector:
    matchLabels: {{- include "portcullis.selectorLabels" . | nindent 6 }}
{{- end }}
{{- end -}}

{{/* The least number of pods of a component: the HPA's floor when it autoscales. */}}
{{- define "portcullis.minReplicas" -}}
{{- if and .autoscaling .autoscaling.enabled }}{{ .autoscaling.minReplicas }}{{ else }}{{ .replicas }}{{ end }}
{{- end -}}
