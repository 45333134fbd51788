{{/*
What the pod is made of: images, environment, mounts, resources, and the fetch and server containers every
engine shares (what differs by engine comes from _vllm.tpl or _engines.tpl: see engineParts; secrets from
_secrets.tpl).
*/}}

{{/*
Image reference from {registry, repository, tag, digest}; the digest wins, the tag defaults to appVersion.
Call with (dict "image" .Values.image "context" $).
*/}}
{{- define "gemma4-serve.imageRef" -}}
{{- $ref := printf "%s/%s" .image.registry .image.repository -}}
{{- if .image.digest -}}
{{- printf "%s@%s" $ref .image.digest -}}
{{- else -}}
{{- printf "%s:%s" $ref (default .context.Chart.AppVersion .image.tag) -}}
{{- end -}}
{{- end -}}

{{/*
Startup budget in seconds: how long the startup probe lets vLLM load, compile and capture graphs.
*/}}
{{- define "gemma4-serve.startupBudgetSeconds" -}}
{{- mul .Values.probes.startup.periodSeconds .Values.probes.startup.failureThreshold -}}
{{- end -}}

{{/*
A list of words as one shell-quoted string, for GEMMA4_EXTRA_ARGS and the fetch step's --extra-args (both
are split like a POSIX shell): plain words stay as they are, anything else is single-quoted, so JSON values
survive intact. Call with the list, e.g. (include "gemma4-serve.shellJoin" .Values.serving.extraArgs).
*/}}
{{- define "gemma4-serve.shellJoin" -}}
{{- $words := list -}}
{{- range . -}}
{{- $word := toString . -}}
{{- if regexMatch "^[A-Za-z0-9_./:=@%+,-]+$" $word -}}
{{- $words = append $words $word -}}
{{- else -}}
{{- $words = append $words (printf "'%s'" (replace "'" "'\"'\"'" $word)) -}}
{{- end -}}
{{- end -}}
{{- join " " $words -}}
{{- end -}}

{{/*
Environment shared by the fetch init container and the server (vLLM or another engine): caches on the
cache volume (every library that writes one is pointed there or at /tmp: the root filesystem is read-only)
and the model pin. Secrets are added per container, as file paths, where the container needs them.
*/}}
{{- define "gemma4-serve.commonEnv" -}}
- name: HOME
  value: /tmp
- name: HF_HOME
  value: /cache/huggingface
- name: VLLM_CACHE_ROOT
  value: /cache/vllm
- name: TRITON_CACHE_DIR
  value: /cache/triton
- name: XDG_CACHE_HOME
  value: /cache/xdg
- name: TORCHINDUCTOR_CACHE_DIR
  value: /cache/inductor
# FlashInfer's JIT kernels (vLLM's sampler, SGLang's attention); its default is under $HOME.
- name: FLASHINFER_WORKSPACE_BASE
  value: /cache/flashinfer
# The pods run as a UID with no passwd entry; getpass.getuser() (used by torch for cache paths) reads USER.
- name: USER
  value: gemma4
- name: VLLM_NO_USAGE_STATS
  value: "1"
- name: DO_NOT_TRACK
  value: "1"
{{- with .Values.serving.model }}
- name: GEMMA4_MODEL
  value: {{ . | quote }}
{{- end }}
{{- with .Values.serving.revision }}
- name: GEMMA4_REVISION
  value: {{ . | quote }}
{{- end }}
{{- end -}}

{{/*
Mounts shared by the fetch init container and the server; `secrets` names the container's own secret
volume (fetch-secrets or server-secrets), or is empty when it gets none.
Call with (dict "secrets" $volumeName).
*/}}
{{- define "gemma4-serve.volumeMounts" -}}
- name: cache
  mountPath: /cache
- name: tmp
  mountPath: /tmp
{{- with .secrets }}
- name: {{ . }}
  mountPath: /run/secrets/gemma4
  readOnly: true
{{- end }}
{{- end -}}

{{/*
Resources of the server container: the GPU from `gpu` (none for engine.device=cpu) merged into `resources`.
*/}}
{{- define "gemma4-serve.serverResources" -}}
{{- $gpu := dict -}}
{{- if ne .Values.engine.device "cpu" -}}
{{- $gpu = dict .Values.gpu.resourceName (.Values.gpu.count | toString) -}}
{{- end -}}
requests:
  {{- toYaml (merge (dict) $gpu (default (dict) .Values.resources.requests)) | nindent 2 }}
limits:
  {{- toYaml (merge (dict) $gpu (default (dict) .Values.resources.limits)) | nindent 2 }}
{{- end -}}

{{/*
"true" when the pod has the fetch init container: always for another engine, for vLLM when fetch.enabled.
*/}}
{{- define "gemma4-serve.fetches" -}}
{{- if or (not (include "gemma4-serve.isVllm" .)) .Values.fetch.enabled -}}true{{- end -}}
{{- end -}}

{{/*
Prefix of the defines that hold what differs by engine, gemma4-serve.vllm (_vllm.tpl) or gemma4-serve.engine
(_engines.tpl): `.fetch` and `.container` (each container's name, image, command), `.env`, `.probes`.
*/}}
{{- define "gemma4-serve.engineParts" -}}
{{- ternary "gemma4-serve.vllm" "gemma4-serve.engine" (eq (include "gemma4-serve.isVllm" .) "true") -}}
{{- end -}}

{{/*
The init container that fills the cache before the server starts, for every engine: the head from the engine's
part, then the common environment, the offline switch, the HF token file when it downloads, and fetch.extraEnv
(proxies, a Hub mirror, a CA bundle) last, so it wins.
*/}}
{{- define "gemma4-serve.fetchContainer" -}}
{{- $files := get (include "gemma4-serve.secretFiles" . | fromJson) "fetch" -}}
{{ include (printf "%s.fetch" (include "gemma4-serve.engineParts" .)) . }}
  env:
    {{- include "gemma4-serve.commonEnv" . | nindent 4 }}
    - name: HF_HUB_OFFLINE
      value: {{ ternary "1" "0" .Values.serving.offline | quote }}
    {{- if hasKey $files "hf-token" }}
    - name: HF_TOKEN_FILE
      value: /run/secrets/gemma4/hf-token
    {{- end }}
    {{- with .Values.fetch.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  securityContext:
    {{- toYaml .Values.containerSecurityContext | nindent 4 }}
  resources:
    {{- toYaml .Values.fetch.resources | nindent 4 }}
  volumeMounts:
    {{- include "gemma4-serve.volumeMounts" (dict "secrets" (ternary "fetch-secrets" "" (not (empty $files)))) | nindent 4 }}
    {{- if not (include "gemma4-serve.isVllm" .) }}
    - name: engine-args
      mountPath: {{ include "gemma4-serve.engineArgsDir" . }}
    {{- end }}
    {{- with .Values.fetch.extraVolumeMounts }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end -}}

{{/*
The server container, for every engine: the head, variables and probes from the engine's part; the common
environment, serving.extraEnv, port, security context, resources and mounts the same for all.
*/}}
{{- define "gemma4-serve.serverContainer" -}}
{{- $parts := include "gemma4-serve.engineParts" . -}}
{{- $files := get (include "gemma4-serve.secretFiles" . | fromJson) "server" -}}
{{ include (printf "%s.container" $parts) . }}
  env:
    {{- include "gemma4-serve.commonEnv" . | nindent 4 }}
    {{- include (printf "%s.env" $parts) . | nindent 4 }}
    {{- with .Values.serving.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  ports:
    - name: http
      containerPort: {{ .Values.serving.port }}
      protocol: TCP
  {{- include (printf "%s.probes" $parts) . | nindent 2 }}
  securityContext:
    {{- toYaml .Values.containerSecurityContext | nindent 4 }}
  resources:
    {{- include "gemma4-serve.serverResources" . | nindent 4 }}
  volumeMounts:
    {{- include "gemma4-serve.volumeMounts" (dict "secrets" (ternary "server-secrets" "" (not (empty $files)))) | nindent 4 }}
    - name: shm
      mountPath: /dev/shm
    {{- if not (include "gemma4-serve.isVllm" .) }}
    - name: engine-args
      mountPath: {{ include "gemma4-serve.engineArgsDir" . }}
      readOnly: true
    {{- end }}
{{- end -}}
