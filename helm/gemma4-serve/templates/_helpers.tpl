{{/*
Names and labels, shared by every template. The other helpers, one file per job: _pod.tpl (what the pod is
made of), _vllm.tpl and _engines.tpl (the parts that differ by engine), _secrets.tpl, _network.tpl (the public
routes) and _validate.tpl (the checks of the values).
*/}}

{{/*
Chart name, truncated to 63 characters (the DNS label limit).
*/}}
{{- define "gemma4-serve.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Fully qualified name: release-chart, or the release name alone when it already contains the chart name.
*/}}
{{- define "gemma4-serve.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
Chart label value: name-version.
*/}}
{{- define "gemma4-serve.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Labels that select the vLLM pods; never change them after a release exists (selectors are immutable).
*/}}
{{- define "gemma4-serve.selectorLabels" -}}
app.kubernetes.io/name: {{ include "gemma4-serve.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: server
{{- end -}}

{{/*
Labels on every resource.
*/}}
{{- define "gemma4-serve.labels" -}}
helm.sh/chart: {{ include "gemma4-serve.chart" . }}
app.kubernetes.io/name: {{ include "gemma4-serve.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: gemma4-serve
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
ServiceAccount the pods run as.
*/}}
{{- define "gemma4-serve.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "gemma4-serve.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}
