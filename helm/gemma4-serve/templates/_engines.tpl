{{/*
The parts of the pod for an engine other than vLLM (gemma4-serve.engineParts): its flags live only in
deploy/engines/<name>.yaml inside the fetch image. The init container downloads and verifies the pinned files
and writes the server command; the engine's own, unmodified image then runs it.
*/}}

{{/*
Devices and variants of each non-vLLM engine, as JSON: the `devices` and `variants` of deploy/engines/*.yaml
(which live in the fetch image, not in the chart). tests/contract/test_helm_engines.py renders every
combination and fails when this table and the engine files disagree.
*/}}
{{- define "gemma4-serve.engines" -}}
{{- dict
  "sglang" (dict "devices" (list "gpu") "variants" (list))
  "llamacpp" (dict "devices" (list "gpu" "cpu") "variants" (list "q8_0" "q4_0"))
  | toJson -}}
{{- end -}}

{{/*
The server image of a non-vLLM engine for the chosen device: engine.images.<name>, or <name>Cpu on CPU.
*/}}
{{- define "gemma4-serve.engineImage" -}}
{{- $key := ternary (printf "%sCpu" .Values.engine.name) .Values.engine.name (eq .Values.engine.device "cpu") -}}
{{- include "gemma4-serve.imageRef" (dict "image" (get .Values.engine.images $key) "context" .) -}}
{{- end -}}

{{/*
Where the fetch step writes the server command of a non-vLLM engine (a sourceable `set --` line).
*/}}
{{- define "gemma4-serve.engineArgsDir" -}}/run/gemma4-serve{{- end -}}

{{/*
Head of an engine's fetch init container: the project's fetch image runs `deploy engine fetch`.
*/}}
{{- define "gemma4-serve.engine.fetch" -}}
# Downloads and verifies the engine's pinned files (offline: verifies only), then writes the server
# command rendered from deploy/engines/<name>.yaml with their local paths. The server runs only that.
- name: fetch
  image: {{ include "gemma4-serve.imageRef" (dict "image" .Values.engine.fetchImage "context" .) }}
  imagePullPolicy: {{ .Values.engine.fetchImage.pullPolicy }}
  # The image's entrypoint is `python3 -m deploy engine`.
  args:
    - fetch
    - {{ .Values.engine.name }}
    - --device
    - {{ .Values.engine.device }}
    {{- with .Values.engine.variant }}
    - --variant
    - {{ . }}
    {{- end }}
    - --extra-args
    - {{ include "gemma4-serve.shellJoin" .Values.engine.extraArgs | quote }}
    - --write-args
    - {{ printf "%s/%s.args" (include "gemma4-serve.engineArgsDir" .) .Values.engine.name }}
{{- end -}}

{{/*
Head of an engine's server container: its own image sources the command the fetch step wrote.
*/}}
{{- define "gemma4-serve.engine.container" -}}
- name: {{ .Values.engine.name }}
  image: {{ include "gemma4-serve.engineImage" . }}
  imagePullPolicy: {{ .Values.engine.images.pullPolicy }}
  # The engine's own, unmodified image runs the command the fetch step wrote (sourced as `set --`
  # words, so paths and JSON survive), plus --api-key from the mounted file when one is set.
  command:
    - /bin/sh
    - -c
    - >-
      . "{{ include "gemma4-serve.engineArgsDir" . }}/$0.args" || exit 1;
      if grep -qs '[^[:space:]]' /run/secrets/gemma4/api-key; then
      set -- "$@" --api-key "$(tr -d '[:space:]' < /run/secrets/gemma4/api-key)"; fi;
      exec "$@"
  args:
    - {{ .Values.engine.name }}
{{- end -}}

{{/*
An engine container's own environment: the command names local files only.
*/}}
{{- define "gemma4-serve.engine.env" -}}
# The init container has filled the cache and the command names local files only.
- name: HF_HUB_OFFLINE
  value: "1"
{{- end -}}

{{/*
An engine's probes and preStop hook: /health for all three, a wait before SIGTERM.
*/}}
{{- define "gemma4-serve.engine.probes" -}}
# Both engines answer /health without the API key, 503 until the model is loaded (SGLang then runs
# a 1-token generation), so it serves all three probes; the startup budget is the same as vLLM's.
{{- range $probe := list "startup" "liveness" "readiness" }}
{{- $p := get $.Values.probes $probe }}
{{ $probe }}Probe:
  httpGet:
    path: /health
    port: http
  periodSeconds: {{ $p.periodSeconds }}
  failureThreshold: {{ $p.failureThreshold }}
  timeoutSeconds: {{ $p.timeoutSeconds }}
{{- end }}
lifecycle:
  # No drain tool in the engine's image: wait for the endpoints to drop this pod before SIGTERM.
  preStop:
    exec:
      command: ["sleep", {{ .Values.drain.delaySeconds | quote }}]
{{- end -}}
