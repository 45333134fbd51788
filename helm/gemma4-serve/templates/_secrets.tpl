{{/*
Secrets: where each comes from (an existing Secret or the chart's), and which container gets which file. They
reach the containers as mounted files only, never as arguments or environment values.
*/}}

{{/*
Name of the Secret the chart creates for secrets given by value.
*/}}
{{- define "gemma4-serve.secretName" -}}
{{- printf "%s-secrets" (include "gemma4-serve.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Where one secret comes from, as a dict {name, key}, or an empty dict when it is not set.
Call with (dict "secret" .Values.secrets.apiKey "context" $).
*/}}
{{- define "gemma4-serve.secretRef" -}}
{{- if .secret.secretName -}}
{{- dict "name" .secret.secretName "key" .secret.secretKey | toJson -}}
{{- else if .secret.value -}}
{{- dict "name" (include "gemma4-serve.secretName" .context) "key" .secret.secretKey | toJson -}}
{{- else -}}
{{- dict | toJson -}}
{{- end -}}
{{- end -}}

{{/*
"true" when clients must send an API key.
*/}}
{{- define "gemma4-serve.hasApiKey" -}}
{{- if or .Values.secrets.apiKey.secretName .Values.secrets.apiKey.value -}}true{{- end -}}
{{- end -}}

{{/*
The secret files of each container, as JSON {"fetch": {file: {name, key}}, "server": {...}}. Only a container
that downloads gets the HF token: the fetch step when online, or vLLM itself when nothing fetched for it and it
may reach the Hub. Only the server gets the API key.
*/}}
{{- define "gemma4-serve.secretFiles" -}}
{{- $hfToken := include "gemma4-serve.secretRef" (dict "secret" .Values.secrets.hfToken "context" .) | fromJson -}}
{{- $apiKey := include "gemma4-serve.secretRef" (dict "secret" .Values.secrets.apiKey "context" .) | fromJson -}}
{{- $files := dict "fetch" (dict) "server" (dict) -}}
{{- if and $hfToken (not .Values.serving.offline) -}}
{{- $_ := set (get $files (ternary "fetch" "server" (eq (include "gemma4-serve.fetches" .) "true"))) "hf-token" $hfToken -}}
{{- end -}}
{{- if $apiKey -}}
{{- $_ := set $files.server "api-key" $apiKey -}}
{{- end -}}
{{- $files | toJson -}}
{{- end -}}

{{/*
A projected volume of secret files; `files` maps a file name (hf-token, api-key) to its {name, key} source,
and an empty map renders nothing. Call with (dict "name" "server-secrets" "files" $files).
*/}}
{{- define "gemma4-serve.secretVolume" -}}
{{- if .files }}
- name: {{ .name }}
  projected:
    defaultMode: 0440
    sources:
      {{- range $path, $ref := .files }}
      - secret:
          name: {{ $ref.name }}
          items:
            - key: {{ $ref.key }}
              path: {{ $path }}
      {{- end }}
{{- end }}
{{- end -}}
