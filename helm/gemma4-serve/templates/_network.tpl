{{/*
What the chart publishes outside the cluster (Ingress and HTTPRoute).
*/}}

{{/*
The paths an Ingress or HTTPRoute carries, as a JSON list of {path, prefix}: /v1 (vLLM 0.21.0 checks the API
key on every path that starts with /v1, and on nothing else), /health, and /metrics only when asked.
Call with (dict "exposeMetrics" .Values.ingress.exposeMetrics).
*/}}
{{- define "gemma4-serve.publicRoutes" -}}
{{- $routes := list (dict "path" "/v1" "prefix" true) (dict "path" "/health" "prefix" false) -}}
{{- if .exposeMetrics -}}
{{- $routes = append $routes (dict "path" "/metrics" "prefix" false) -}}
{{- end -}}
{{- $routes | toJson -}}
{{- end -}}
