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

{{- /* How the components authenticate each other (componentTLS.mode, `auto` resolved):
     certManager, controller or insecure. Takes the root context. */}}
{{- define "portcullis.componentTLS" -}}
{{- $m := .Values.componentTLS.mode -}}
{{- if eq $m "auto" -}}
{{- ternary "certManager" "controller" (.Capabilities.APIVersions.Has "cert-manager.io/v1") -}}
{{- else -}}
{{- $m -}}
{{- end -}}
{{- end -}}

{{- /* The components that get a certificate, with its names: a list of dicts
     {component, dns, nodes}. dns: the names its clients dial; nodes: the xDS node ids
     (pod names) it may subscribe as. Takes the root context. */}}
{{- define "portcullis.componentCerts" -}}
{{- $r := . -}}
{{- $host := dict -}}
{{- range $x := list "xds" "authz" "ratelimit" "accesslog" -}}
{{- $_ := set $host $x (include "portcullis.host" (dict "root" $r "component" $x)) -}}
{{- end -}}
{{- $out := list (dict "component" "xds" "dns" (list (get $host "xds")) "nodes" list) -}}
{{- if .Values.authz.enabled -}}
{{- $out = append $out (dict "component" "authz" "dns" (list (get $host "authz")) "nodes" list) -}}
{{- end -}}
{{- if .Values.ratelimit.enabled -}}
{{- $out = append $out (dict "component" "ratelimit" "dns" (list (get $host "ratelimit")) "nodes" (list (printf "%s-*" (include "portcullis.name" (dict "root" $r "component" "ratelimit"))))) -}}
{{- end -}}
{{- if eq .Values.accessLog.mode "grpc" -}}
{{- $out = append $out (dict "component" "accesslog" "dns" (list (get $host "accesslog")) "nodes" list) -}}
{{- end -}}
{{- if .Values.envoy.enabled -}}
{{- $out = append $out (dict "component" "envoy" "dns" list "nodes" (list (printf "%s-*" (include "portcullis.name" (dict "root" $r "component" "envoy"))))) -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{- /* A component's mTLS Secret (mounted at /etc/portcullis/mtls). */}}
{{- define "portcullis.tlsSecret" -}}
{{ include "portcullis.name" . }}-tls
{{- end -}}

{{- /* The server flags of a gRPC component: its mounted certificate, or plaintext. */}}
{{- define "portcullis.mtlsEnv" -}}
{{- if ne (include "portcullis.componentTLS" .root) "insecure" }}
- {name: PORTCULLIS_TLS_CERT, value: /etc/portcullis/mtls/tls.crt}
- {name: PORTCULLIS_TLS_KEY, value: /etc/portcullis/mtls/tls.key}
- {name: PORTCULLIS_CLIENT_CA, value: /etc/portcullis/mtls/ca.crt}
{{- else }}
# componentTLS.mode=insecure: plaintext gRPC; the NetworkPolicy limits who reaches it.
- {name: PORTCULLIS_INSECURE, value: "true"}
{{- end }}
{{- end -}}

{{- /* The volume and mount of a component's mTLS Secret (none when insecure). Mounted
     as a directory, so a renewed Secret reaches the files (the servers re-read them). */}}
{{- define "portcullis.mtlsMount" -}}
{{- if ne (include "portcullis.componentTLS" .root) "insecure" }}
- {name: mtls, mountPath: /etc/portcullis/mtls, readOnly: true}
{{- end }}
{{- end -}}
{{- define "portcullis.mtlsVolume" -}}
{{- if ne (include "portcullis.componentTLS" .root) "insecure" }}
- name: mtls
  secret: {secretName: {{ include "portcullis.tlsSecret" . }}, defaultMode: 0440}
{{- end }}
{{- end -}}

{{- /* The controller's --component-certs plan (componentTLS.mode=controller): the CA
     Secret, its own xDS names, and the Secrets it issues (component_certs.rs). */}}
{{- define "portcullis.componentCertPlan" -}}
{{- $r := . -}}
{{- $plan := dict "caSecret" (include "portcullis.name" (dict "root" . "component" "mtls-ca")) "secrets" list -}}
{{- range $cert := include "portcullis.componentCerts" . | fromJsonArray -}}
{{- if eq $cert.component "xds" -}}
{{- $_ := set $plan "xdsDns" $cert.dns -}}
{{- else -}}
{{- $_ := set $plan "secrets" (append $plan.secrets (dict "name" (include "portcullis.tlsSecret" (dict "root" $r "component" $cert.component)) "dns" $cert.dns "nodes" $cert.nodes)) -}}
{{- end -}}
{{- end -}}
{{- toJson $plan -}}
{{- end -}}
