{{/*
Labels of every object: the two that deploy/ (kustomize) sets, plus Helm's own.
tests/chart.rs compares the rendered objects with deploy/ without Helm's three.
*/}}
{{- define "fleet-delete-guard.labels" -}}
app.kubernetes.io/name: fleet-delete-guard
app.kubernetes.io/component: {{ .component | default "webhook" }}
{{ include "fleet-delete-guard.helmLabels" .root }}
{{- end -}}

{{- define "fleet-delete-guard.helmLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels of the webhook's objects. */}}
{{- define "fleet-delete-guard.webhookLabels" -}}
{{ include "fleet-delete-guard.labels" (dict "root" . "component" "webhook") }}
{{- end -}}

{{/* Fleet's agent namespaces' service-account groups (--fleet-identity). */}}
{{- define "fleet-delete-guard.fleetGroups" -}}
["system:serviceaccounts:cattle-fleet-system", "system:serviceaccounts:cattle-fleet-local-system"]
{{- end -}}

{{- define "fleet-delete-guard.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
