{{/*
The vLLM parts of the pod (gemma4-serve.engineParts): the project's image runs the launcher, which reads the
profile named by serving.profile and appends serving.extraArgs; no serving argument is written here.
*/}}

{{/*
"true" when the pod runs vLLM (the project's image and launcher) rather than another engine.
*/}}
{{- define "gemma4-serve.isVllm" -}}
{{- if eq .Values.engine.name "vllm" -}}true{{- end -}}
{{- end -}}

{{/*
VLLM_ENGINE_READY_TIMEOUT_S: serving.engineReadyTimeoutSeconds, or the startup budget when it is 0, so that
vLLM never gives up on a slow load while the startup probe would still wait.
*/}}
{{- define "gemma4-serve.engineReadyTimeoutSeconds" -}}
{{- default (include "gemma4-serve.startupBudgetSeconds" .) .Values.serving.engineReadyTimeoutSeconds -}}
{{- end -}}

{{/*
Head of vLLM's fetch init container: the project's image downloads the pinned checkpoint and verifies it.
*/}}
{{- define "gemma4-serve.vllm.fetch" -}}
# Downloads the pinned checkpoint into the cache and verifies it before vLLM starts, so vLLM never
# downloads inside its engine start-up limit. Offline: verify only, which fails clearly on a miss.
- name: fetch
  image: {{ include "gemma4-serve.imageRef" (dict "image" .Values.image "context" .) }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  command: ["/bin/sh", "-c"]
  args:
    {{- if .Values.serving.offline }}
    - exec python3 -m deploy verify
    {{- else }}
    - python3 -m deploy fetch && exec python3 -m deploy verify
    {{- end }}
{{- end -}}

{{/*
Head of the vLLM container: the image's entrypoint, no command or arguments.
*/}}
{{- define "gemma4-serve.vllm.container" -}}
- name: vllm
  image: {{ include "gemma4-serve.imageRef" (dict "image" .Values.image "context" .) }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  # The image's entrypoint is the launcher (`python3 -m deploy launch`): it picks the profile and
  # execs `vllm serve --config <profile> $GEMMA4_EXTRA_ARGS`. No serving argument is written here.
{{- end -}}

{{/*
The vLLM container's own environment: what the launcher reads (GEMMA4_*), vLLM's start-up limit, and the
secret files it is given.
*/}}
{{- define "gemma4-serve.vllm.env" -}}
{{- $files := get (include "gemma4-serve.secretFiles" . | fromJson) "server" -}}
# The init container has filled the cache: vLLM itself never reaches for the Hub.
- name: HF_HUB_OFFLINE
  value: {{ ternary "1" "0" (or .Values.serving.offline .Values.fetch.enabled) | quote }}
- name: GEMMA4_PROFILE
  value: {{ .Values.serving.profile | quote }}
- name: GEMMA4_FEATURES
  value: {{ join "," .Values.serving.features | quote }}
- name: GEMMA4_EXTRA_ARGS
  value: {{ include "gemma4-serve.shellJoin" .Values.serving.extraArgs | quote }}
# The launcher makes vLLM listen here (the profiles say 8000); probes, drain and Service follow.
- name: GEMMA4_LISTEN_PORT
  value: {{ .Values.serving.port | quote }}
- name: VLLM_ENGINE_READY_TIMEOUT_S
  value: {{ include "gemma4-serve.engineReadyTimeoutSeconds" . | quote }}
{{- if hasKey $files "hf-token" }}
- name: HF_TOKEN_FILE
  value: /run/secrets/gemma4/hf-token
{{- end }}
{{- if hasKey $files "api-key" }}
- name: VLLM_API_KEY_FILE
  value: /run/secrets/gemma4/api-key
{{- end }}
{{- end -}}

{{/*
vLLM's probes and preStop hook: a real answer to start, /health afterwards, a drain before SIGTERM.
*/}}
{{- define "gemma4-serve.vllm.probes" -}}
# Started only when the model answers: /v1/models and a 1-token chat completion (with the API key),
# so a pod joins the Service after a real answer. The probe's own deadline ends before the kubelet's.
startupProbe:
  exec:
    command:
      - python3
      - -m
      - deploy
      - probe
      - --ready
      - --url
      - http://127.0.0.1:{{ .Values.serving.port }}
      - --timeout
      - {{ sub .Values.probes.startup.timeoutSeconds 2 | quote }}
  periodSeconds: {{ .Values.probes.startup.periodSeconds }}
  failureThreshold: {{ .Values.probes.startup.failureThreshold }}
  timeoutSeconds: {{ .Values.probes.startup.timeoutSeconds }}
# Afterwards /health only. A chat completion waits in vLLM's queue behind the running requests: under
# load it would time out on every pod at once and empty the Service, an outage made by the check.
# `helm test` runs the real completions (the smoke suite).
livenessProbe:
  httpGet:
    path: /health
    port: http
  periodSeconds: {{ .Values.probes.liveness.periodSeconds }}
  failureThreshold: {{ .Values.probes.liveness.failureThreshold }}
  timeoutSeconds: {{ .Values.probes.liveness.timeoutSeconds }}
readinessProbe:
  httpGet:
    path: /health
    port: http
  periodSeconds: {{ .Values.probes.readiness.periodSeconds }}
  failureThreshold: {{ .Values.probes.readiness.failureThreshold }}
  timeoutSeconds: {{ .Values.probes.readiness.timeoutSeconds }}
lifecycle:
  # vLLM 0.21.0 aborts unfinished requests on SIGTERM: wait for the endpoints to drop this pod,
  # then for running and waiting requests to finish, before Kubernetes sends it.
  preStop:
    exec:
      command:
        - python3
        - -m
        - deploy
        - drain
        - --url
        - http://127.0.0.1:{{ .Values.serving.port }}
        - --delay
        - {{ .Values.drain.delaySeconds | quote }}
        - --timeout
        - {{ .Values.drain.timeoutSeconds | quote }}
{{- end -}}
