{{/* The controller's name: its ServiceAccount, Deployment, Service and RBAC. */}}
{{- define "crossgate.name" -}}crossgate-controller{{- end -}}

{{- define "crossgate.labels" -}}
app.kubernetes.io/name: crossgate
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "crossgate.selector" -}}
app.kubernetes.io/name: crossgate
app.kubernetes.io/component: controller
{{- end -}}

{{- define "crossgate.image" -}}
{{ .Values.controller.image.repository }}:{{ default .Chart.AppVersion .Values.controller.image.tag }}
{{- end -}}

{{/* Fails rendering with a message naming the value and what is allowed. */}}
{{- define "crossgate.validate" -}}
{{- $label := "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$" -}}
{{- range $k := list "region" "zone" "group" -}}
{{- $v := index $.Values.clusterSet $k | toString -}}
{{- if or (gt (len $v) 63) (not (regexMatch $label $v)) -}}
{{- fail (printf "clusterSet.%s %q: want a DNS label (lower-case letters, digits and '-', at most 63)" $k $v) -}}
{{- end -}}
{{- end -}}
{{- $name := .Values.clusterSet.name | toString -}}
{{- if and $name (or (gt (len $name) 63) (not (regexMatch $label $name))) -}}
{{- fail (printf "clusterSet.name %q: want empty or a DNS label (lower-case letters, digits and '-', at most 63)" $name) -}}
{{- end -}}
{{- if not (has .Values.logLevel (list "debug" "info" "warn" "error")) -}}
{{- fail (printf "logLevel %q: want debug, info, warn or error" .Values.logLevel) -}}
{{- end -}}
{{- if not (has .Values.controller.federation (list "auto" "on" "off")) -}}
{{- fail (printf "controller.federation %q: want auto, on or off" .Values.controller.federation) -}}
{{- end -}}
{{- $lb := int .Values.gateway.lbPort -}}
{{- if or (lt $lb 1) (gt $lb 65535) -}}
{{- fail (printf "gateway.lbPort %v: want 1-65535" .Values.gateway.lbPort) -}}
{{- end -}}
{{- $np := int .Values.gateway.nodePort -}}
{{- if or (lt $np 0) (gt $np 65535) -}}
{{- fail (printf "gateway.nodePort %v: want 0 (allocated) or a port in the cluster's node-port range" .Values.gateway.nodePort) -}}
{{- end -}}
{{- if and .Values.certManager.enabled (not .Values.webhook.enabled) -}}
{{- fail "certManager.enabled: cert-manager issues the webhook's certificate; it needs webhook.enabled" -}}
{{- end -}}
{{- if not (has .Values.certManager.issuerRef.kind (list "Issuer" "ClusterIssuer")) -}}
{{- fail (printf "certManager.issuerRef.kind %q: want Issuer or ClusterIssuer" .Values.certManager.issuerRef.kind) -}}
{{- end -}}
{{- end -}}
